"""What a training run reports: its result, the progress log and TensorBoard, and the loss curve as a picture.

The picture goes into the asset's metadata, so the Dagster UI shows how a run went without TensorBoard.
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gocoder_assets.storage import atomic_file

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

    from gocoder_assets.checkpoint.evaluate import EvalReport


@dataclass
class TrainResult:
    """What a run did, for asset metadata and for checking the run learned something."""

    preset: str
    params: int
    context_length: int
    steps: int
    resumed_from_step: int
    tokens_seen: int
    total_batch_tokens: int
    micro_batch: int
    accumulation: int
    world_size: int
    initial_loss: float
    final_train_loss: float
    tokens_per_s: float  # steady state: excludes the first step of this process (compile/warm-up) and evals
    mfu: float  # model FLOP/s ÷ this device's matmul peak measured at start (on CPU: the same ratio)
    wall_time_s: float
    device: str
    backend: str
    precision: str
    device_name: str
    compiled: bool
    activation_checkpointing: bool
    optimizer: str
    skipped_steps: int  # fp16 GradScaler steps skipped for inf/NaN gradients (normal while the scale settles)
    memory: dict[str, int]
    val: dict[str, float | int]
    val_unigram: dict[str, float | int]
    losses: list[float] = field(repr=False, default_factory=list)
    evals: list[dict[str, float | int]] = field(repr=False, default_factory=list)

    def as_metadata(self) -> dict[str, float | int | str]:
        """Flat and JSON-safe, for Dagster; the per-step history goes to files, not metadata."""
        flat: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if key in ("losses", "evals"):
                continue
            if key == "memory":
                flat.update({f"memory_{k}_bytes": v for k, v in value.items()})
            elif isinstance(value, dict):
                flat.update(value)
            else:
                flat[key] = str(value) if isinstance(value, bool) else value
        return flat


class Progress:
    """Loss/LR/grad-norm history, logging and TensorBoard; rank 0 only writes."""

    def __init__(
        self, writer: SummaryWriter | None, log: Callable[[str], None], tokens_per_step: int, flops: float, peak: float
    ) -> None:
        self.writer, self.log, self.tokens_per_step = writer, log, tokens_per_step
        self.flops, self.peak = flops, peak
        self.losses: list[float] = []
        self.evals: list[dict[str, float | int]] = []
        self.interval: list[float] = []
        self.interval_tokens = 0
        self.interval_start = time.perf_counter()

    def step(
        self,
        done: int,
        max_steps: int,
        loss: float,
        lr: float,
        grad_norm: float,
        log_now: bool,
        tokens: int | None = None,
    ) -> None:
        """``tokens``: real tokens of this step when they vary (padded instruction pairs); default the fixed size."""
        self.losses.append(loss)
        self.interval.append(loss)
        self.interval_tokens += self.tokens_per_step if tokens is None else tokens
        if not log_now:
            return
        now = time.perf_counter()
        rate = self.interval_tokens / max(now - self.interval_start, 1e-9)
        mean = sum(self.interval) / len(self.interval)
        scalars = {
            "loss": mean,
            "lr": lr,
            "grad_norm": grad_norm,
            "tokens_per_s": rate,
            "mfu": rate * self.flops / self.peak,
        }
        if self.writer:
            for tag, value in scalars.items():
                self.writer.add_scalar(f"train/{tag}", value, done)
        self.log(f"step {done}/{max_steps} loss {mean:.4f} lr {lr:.2e} {rate:,.0f} tok/s")
        self.interval, self.interval_tokens, self.interval_start = [], 0, time.perf_counter()

    def eval(self, done: int, report: EvalReport) -> None:
        meta = report.as_metadata("val")
        self.evals.append({"step": done, **meta})
        if self.writer:
            for key, value in meta.items():
                if key.startswith(("val_loss", "val_bpb", "val_ppl")):
                    self.writer.add_scalar(key.replace("val_", "val/", 1), value, done)
        self.log(
            f"step {done} val loss {report.overall.loss:.4f} ({report.overall.bpb:.3f} bits/byte) over "
            f"{report.overall.tokens:,} tokens"
        )


def loss_curve_png(
    losses: Sequence[float], evals: Sequence[Mapping[str, float | int]], title: str, baseline: float | None = None
) -> bytes:
    """Train loss per step (and its running mean), val loss per category at each eval and the unigram
    baseline on the same val tokens (the line a model must get under), as PNG bytes."""
    import matplotlib  # noqa: PLC0415 - only the training worker draws

    matplotlib.use("Agg")  # no display: workers run headless
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    steps = range(1, len(losses) + 1)
    ax.plot(steps, losses, color="#9ecae1", linewidth=0.8, label="train (per step)")
    window = max(1, len(losses) // 50)
    if window > 1:
        smooth = [
            sum(losses[max(0, i - window + 1) : i + 1]) / len(losses[max(0, i - window + 1) : i + 1])
            for i in range(len(losses))
        ]
        ax.plot(steps, smooth, color="#08519c", linewidth=1.5, label=f"train (mean of {window})")
    series = sorted({k for e in evals for k in e if k == "val_loss" or k.startswith("val_loss_")})
    for key in series:
        points = [(e["step"], e[key]) for e in evals if key in e]
        ax.plot(*zip(*points, strict=True), marker="o", linewidth=1.2, label=key.replace("val_loss", "val") or "val")
    if baseline is not None:
        ax.axhline(baseline, color="grey", linestyle="--", linewidth=1, label="val unigram baseline")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure_png(fig)


def figure_png(fig: Any) -> bytes:
    """A finished matplotlib figure as PNG bytes (the figure is closed: workers draw many)."""
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def write_png(png: bytes, path: Path) -> None:
    with atomic_file(path) as tmp:
        tmp.write_bytes(png)


def markdown_image(png: bytes, alt: str) -> str:
    """A data-URL image, which Dagster's markdown metadata renders inline in the UI."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"
