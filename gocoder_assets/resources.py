"""Every side effect lives behind a resource: the data folder, the repository source, the GPU.

Assets ask resources for Dagster-free objects (`Layout`, a `RepoSource`, a `DeviceChoice`)
and hand those to plain functions, so tests can swap a resource for a fake or call the
functions directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from gocoder_assets.sources.base import RepoSource
from gocoder_assets.storage import Layout

if TYPE_CHECKING:
    from gocoder_assets.checkpoint.device import DeviceChoice


class StorageResource(dg.ConfigurableResource):
    """The data folder every asset writes under (relative paths resolve from the cwd)."""

    root: str = "data"

    def layout(self) -> Layout:
        return Layout(Path(self.root))


class RepoSourceResource(dg.ConfigurableResource):
    """Where repositories come from. Subclasses implement `get_source`.

    The assets depend on this base type only, so the GitHub source drops in as another
    subclass bound to the same resource key.
    """

    def get_source(self) -> RepoSource:
        raise NotImplementedError


class LocalSourceResource(RepoSourceResource):
    """Offline source: the Go distribution's source, a folder of git clones, or both.

    ``packages`` limits the Go distribution to some top-level directories of ``src/``
    (a quick demo, the test slice); None means all. ``include_go`` defaults to "only when
    no clones folder is given", so pointing at your clones trains on them alone.
    """

    clones_dir: str | None = None
    goroot: str | None = None
    packages: list[str] | None = None
    include_go: bool | None = None
    max_commits: int = 1000

    def get_source(self) -> RepoSource:
        from gocoder_assets.sources.base import ChainedSource  # noqa: PLC0415
        from gocoder_assets.sources.git_clones import GitClonesSource  # noqa: PLC0415
        from gocoder_assets.sources.goroot import GoRootSource  # noqa: PLC0415

        sources: dict[str, RepoSource] = {}
        if self.include_go if self.include_go is not None else not self.clones_dir:
            goroot = Path(self.goroot) if self.goroot else None
            sources["goroot"] = GoRootSource(goroot=goroot, packages=self.packages)
        if self.clones_dir:
            sources["git"] = GitClonesSource(Path(self.clones_dir), max_commits=self.max_commits)
        if not sources:
            raise ValueError("no source configured: set clones_dir or include_go")
        return ChainedSource(sources)


class GPUResource(dg.ConfigurableResource):
    """Picks the accelerator and precision for training, and how the training process is launched.

    ``device``: auto | cuda | rocm | mps | cpu. ``precision``: auto (bf16 autocast where the hardware
    runs it natively, else fp16 + loss scaling on GPUs, fp32 on CPUs) | bf16 | fp16 | fp32.
    ``compile`` turns on torch.compile.

    ROCm: ``hip_alloc_conf`` becomes PYTORCH_HIP_ALLOC_CONF (e.g.
    "expandable_segments:True,garbage_collection_threshold:0.8" against fragmentation on small cards);
    ``hsa_override_gfx_version`` becomes HSA_OVERRIDE_GFX_VERSION (e.g. "10.3.0", so ROCm runs its
    gfx1030 kernels on gfx1031/gfx1032 RDNA2 cards it does not ship kernels for).

    ``num_processes``: data-parallel processes per node (launched with torchrun when above 1);
    ``torchrun_args``: extra torchrun arguments for multi-node runs, e.g.
    ["--nnodes=2", "--node-rank=0", "--rdzv-endpoint=host:29500"].
    """

    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    hip_alloc_conf: str | None = None
    hsa_override_gfx_version: str | None = None
    num_processes: int = 1
    torchrun_args: list[str] = []

    def choice(self) -> DeviceChoice:
        from gocoder_assets.checkpoint.device import pick_device  # noqa: PLC0415

        return pick_device(self.device, self.precision)

    def launch_env(self) -> dict[str, str]:
        """Environment variables for the training subprocess: only those configured.

        The HIP runtime reads these once, when it initialises, and this (Dagster) process may already
        have initialised it, so setting them in ``os.environ`` here would be silently ignored. That is
        why training runs in a subprocess started with this environment.
        """
        env = {"PYTORCH_HIP_ALLOC_CONF": self.hip_alloc_conf, "HSA_OVERRIDE_GFX_VERSION": self.hsa_override_gfx_version}
        return {name: value for name, value in env.items() if value}
