"""RunDir: the one on-disk format of every experiment.

    RUN/config.json    the run's configuration (JSON, written once)
    RUN/metrics.csv    one row per logged step (wide format; columns fixed by the first row)
    RUN/events.*       TensorBoard scalars (same values as metrics.csv)
    RUN/summary.json   the machine-readable result: flat keys, units in names, + provenance (command, git
                       commit, and under "environment" the Python version, CPU, torch's kernel set and library versions)
    RUN/plots/*.png    figures
    RUN/ckpt/          checkpoints (state_dict + JSON meta, see each algorithm)
"""

from __future__ import annotations

import csv
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import edgegen


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# The numerical libraries whose versions a summary records (those installed): a figure that moves between two runs
# of the same commit on different machines or library versions can then be traced.
LIBRARIES = ("numpy", "scipy", "scikit-learn", "torch", "gymnasium", "stable-baselines3", "sb3-contrib", "ray",
             "transformers", "peft", "opacus", "flwr")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("unknown" where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment() -> dict:
    """Where a run ran: Python version, CPU model and count, the instruction set torch's CPU kernels use, and the
    versions of the installed `LIBRARIES`.

    The instruction set matters for reproducing a figure: the same commit, seed and library versions train to
    different accuracies with torch's AVX2 and AVX-512 kernels (their float rounding differs, and a long training
    run amplifies it: the LoRA digits tier moved by several points on a seed, benchmarks/notes.md). Setting
    ``ATEN_CPU_CAPABILITY`` (e.g. ``avx2``) on a newer CPU selects the older kernels."""
    import torch

    libraries = {}
    for name in LIBRARIES:
        try:
            libraries[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {"python": platform.python_version(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "libraries": libraries}


def current_command() -> str:
    """The command line of this process, with the working directory's prefix removed."""
    return " ".join(sys.argv).replace(str(Path.cwd()) + "/", "")


class RunDir:
    def __init__(self, path: str | Path, tensorboard: bool = True):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "plots").mkdir(exist_ok=True)
        self.ckpt = self.path / "ckpt"
        self.ckpt.mkdir(exist_ok=True)
        self._tensorboard = tensorboard
        self._writer = None
        self._columns: list[str] | None = None
        if self.metrics_path.exists():
            with self.metrics_path.open() as f:
                self._columns = next(csv.reader(f), None)

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.csv"

    def write_config(self, config: dict) -> None:
        (self.path / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))

    def read_config(self) -> dict:
        return json.loads((self.path / "config.json").read_text())

    def log(self, step: int, **metrics: float) -> None:
        """Append one row to metrics.csv (and TensorBoard). The first row fixes the columns."""
        row = {"step": step, **metrics}
        if self._columns is None:
            self._columns = list(row)
            with self.metrics_path.open("w", newline="") as f:
                csv.writer(f).writerow(self._columns)
        unknown = set(row) - set(self._columns)
        if unknown:
            raise KeyError(f"metrics {sorted(unknown)} not among the columns {self._columns} of {self.metrics_path}")
        with self.metrics_path.open("a", newline="") as f:
            csv.writer(f).writerow([row.get(c, "") for c in self._columns])
        if self._tensorboard:
            if self._writer is None:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(self.path))
            for key, value in metrics.items():
                self._writer.add_scalar(key, float(value), step)

    def read_metrics(self) -> list[dict[str, float]]:
        if not self.metrics_path.exists():
            return []
        with self.metrics_path.open() as f:
            return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]

    def truncate_metrics(self, max_step: int) -> None:
        """Drop rows logged after `max_step` (a resumed run re-logs them from its checkpoint)."""
        rows = [r for r in self.read_metrics() if r["step"] <= max_step]
        if self._columns is None:
            return
        with self.metrics_path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(self._columns)
            for r in rows:
                w.writerow([_fmt(r.get(c, "")) for c in self._columns])

    def write_summary(self, summary: dict, seed: int | None = None, command: str | None = None) -> dict:
        """Write summary.json with provenance (command, git commit, `environment()`); `command` defaults to this
        process's command line."""
        full = {**summary, "command": command or current_command(), "seed": seed, "git_sha": git_sha(),
                "edgegen_version": edgegen.__version__, "environment": environment()}
        (self.path / "summary.json").write_text(json.dumps(full, indent=2, sort_keys=True, default=float))
        return full

    def read_summary(self) -> dict:
        return json.loads((self.path / "summary.json").read_text())

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _fmt(v):
    return int(v) if isinstance(v, float) and v.is_integer() else v


def save_figure(fig, path: Path) -> Path:
    """Write a matplotlib figure as a PNG (tight layout, 120 dpi), creating its folder, and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
