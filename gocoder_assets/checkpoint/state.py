"""Training state on disk: what a multi-day run needs to survive a crash and resume bit for bit.

A run saves, every ``checkpoint_interval`` steps, everything the next step depends on: weights,
AdamW moments, the GradScaler, the step (the LR schedule is a pure function of it), torch and
CUDA RNG states, the window sampler's generator and the loss history so far. Each save is one
``step_NNNNNNNN`` folder written through ``atomic_dir``, so a kill mid-save leaves the previous
one intact; the last ``keep`` are kept.

A saved state belongs to one *fingerprint*: the hash of every setting that changes what the run
computes (optimization config, model shape, the exact shards). Re-materializing with the same
settings resumes; any change starts fresh and names the settings that differ, because silently
continuing a run under a new schedule or corpus gives a model nobody asked for.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gocoder_assets.storage import atomic_dir, read_json, write_json

STATE_FILE = "state.pt"
META_FILE = "meta.json"
FINGERPRINT_FILE = "fingerprint.json"


def fingerprint(settings: dict[str, Any]) -> str:
    """SHA-256 of the settings as canonical JSON."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def changed_settings(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Top-level (and one level nested) keys whose values differ, for the "starting fresh" message."""
    changed = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += [f"{key}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            changed.append(key)
    return changed


@dataclass
class Resumed:
    """A loaded state: ``payload`` is what ``save`` was given."""

    step: int
    payload: dict[str, Any]
    path: Path


class StateStore:
    """Checkpoints of one run under ``root``: ``fingerprint.json`` plus ``step_*`` folders."""

    def __init__(self, root: Path, settings: dict[str, Any], keep: int = 3) -> None:
        if keep < 1:
            raise ValueError(f"keep_checkpoints must be at least 1, got {keep}")
        # Compared as JSON sees them (int dict keys become strings), so a reload never looks like a change.
        self.root, self.settings, self.keep = Path(root), json.loads(json.dumps(settings, default=str)), keep
        self.fingerprint = fingerprint(settings)

    def steps(self) -> list[Path]:
        """Complete saves, oldest first (``atomic_dir`` temp folders start with a dot and are ignored)."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.glob("step_*") if (p / META_FILE).is_file() and (p / STATE_FILE).is_file())

    def prepare(self) -> str | None:
        """Make the store match this run's settings; returns why earlier state was discarded, if it was."""
        marker = self.root / FINGERPRINT_FILE
        reason = None
        if marker.is_file():
            old = read_json(marker)
            if old.get("fingerprint") != self.fingerprint:
                changed = changed_settings(old.get("settings", {}), self.settings) or ["(unknown)"]
                reason = f"settings changed ({', '.join(changed)}): starting fresh"
                shutil.rmtree(self.root)
        elif self.steps():
            reason = "saved state has no fingerprint: starting fresh"
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        write_json(marker, {"fingerprint": self.fingerprint, "settings": self.settings})
        return reason

    def latest(self, map_location: str | torch.device = "cpu") -> Resumed | None:
        """The newest readable save of this fingerprint, or None."""
        for path in reversed(self.steps()):
            meta = read_json(path / META_FILE)
            if meta.get("fingerprint") != self.fingerprint:
                continue
            payload = torch.load(path / STATE_FILE, map_location=map_location, weights_only=False)
            return Resumed(step=int(meta["step"]), payload=payload, path=path)
        return None

    def save(self, step: int, payload: dict[str, Any]) -> Path:
        """Write one save atomically, then drop all but the newest ``keep``."""
        path = self.root / f"step_{step:08d}"
        with atomic_dir(path) as tmp:
            torch.save(payload, tmp / STATE_FILE)
            write_json(tmp / META_FILE, {"step": step, "fingerprint": self.fingerprint})
        for old in self.steps()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return path


def rng_state(device_type: str) -> dict[str, Any]:
    """torch's CPU and (when used) CUDA generator states."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device_type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
