"""wandb (offline by default) + console + a metrics.jsonl file + a training-curve PNG."""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

log = logging.getLogger("ascl_ray")

PHASES = ("rollout", "reward", "advantage", "train", "sync")


TYPE_SHORT = (("gray_zone", "gray"), ("harmful", "harm"), ("benign_sensitive", "benign"), ("math", "math"))


def format_headline(metrics: dict[str, Any]) -> str:
    """Console line: consultation first (needs-rules vs no-rules and the targeting gap, then per prompt
    type), then malformed calls, then rewards."""
    types = TYPE_SHORT
    parts = []
    if "consultation/targeting_gap" in metrics:
        parts.append(f"consult needs-rules={metrics['consultation/needs_rules']:.2f} "
                     f"no-rules={metrics['consultation/no_rules']:.2f} gap={metrics['consultation/targeting_gap']:+.2f}")
    if "consultation/rate" in metrics:
        per = " ".join(f"{s}={metrics[f'consultation/{t}']:.2f}" for t, s in types if f"consultation/{t}" in metrics)
        parts.append(f"consult={metrics['consultation/rate']:.2f} [{per}]")
    if "rollout/malformed_call_rate" in metrics:
        parts.append(f"malformed={metrics['rollout/malformed_call_rate']:.2f}")
    if "reward/mean" in metrics:
        per = " ".join(f"{s}={metrics[f'reward/{t}']:.2f}" for t, s in types if f"reward/{t}" in metrics)
        parts.append(f"reward={metrics['reward/mean']:.3f} [{per}]")
    return "  ".join(parts)


class PhaseTimer:
    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - t0


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl; a line that does not parse (a crash mid-write) is skipped."""
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and isinstance(row.get("step"), (int, float)):
                rows.append(row)
    return rows


class Tracker:
    """Metrics of one run: ``history`` (rows ``{"step": s, **metrics}``), ``metrics.jsonl`` in ``out_dir``
    (one row per ``log``), wandb (``mode``: offline | online | disabled) and the console.

    A fresh run (``resume_step`` None) truncates ``metrics.jsonl``. A resumed run (``resume_step`` = the
    first step it will log) keeps the rows of the earlier steps (``step < resume_step``): the file is
    rewritten atomically with just those rows, ``history`` starts with them, and new rows are appended.
    ``wandb_id`` continues that wandb run (``resume="allow"``); ``self.wandb_id`` is the run's id (None
    with wandb disabled), for the checkpoint to record."""

    def __init__(self, out_dir: str, config: dict, *, mode: str = "offline", project: str = "ascl-ray",
                 run_name: Optional[str] = None, progress: bool = True, total: int = 0,
                 resume_step: Optional[int] = None, wandb_id: Optional[str] = None):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.history: list[dict[str, Any]] = []
        if resume_step is None:
            self._jsonl = open(self._jsonl_path, "w")   # a fresh run: never append to an old one
        else:
            self.history = [r for r in _read_rows(self._jsonl_path) if r["step"] < resume_step]
            self._jsonl = None
            self._rewrite_jsonl()
        self.wandb = None
        self._wandb_id: Optional[str] = None
        if mode != "disabled":
            os.environ.setdefault("WANDB_SILENT", "true")
            import wandb

            kw: dict[str, Any] = dict(id=wandb_id, resume="allow") if wandb_id else {}
            self.wandb = wandb.init(project=project, name=run_name, config=config, mode=mode,
                                    dir=str(self.out_dir), reinit="finish_previous", **kw)
            self.wandb.define_metric("consultation/*", summary="last")
            self._wandb_id = self.wandb.id
        self.bars = {}
        if progress and total:
            from tqdm.auto import tqdm

            for i, ph in enumerate(PHASES):
                self.bars[ph] = tqdm(total=total, desc=f"{ph:>9}", position=i, leave=True, dynamic_ncols=True)

    @property
    def _jsonl_path(self) -> Path:
        return self.out_dir / "metrics.jsonl"

    @property
    def wandb_id(self) -> Optional[str]:
        """The wandb run id (pass it back as ``wandb_id`` to continue the run); None with wandb disabled."""
        return self._wandb_id

    def _rewrite_jsonl(self) -> None:
        """Replace metrics.jsonl with ``history`` in one rename, then append to it."""
        if self._jsonl is not None:
            self._jsonl.close()
        tmp = self._jsonl_path.with_name("metrics.jsonl.tmp")
        with open(tmp, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in self.history)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._jsonl_path)
        self._jsonl = open(self._jsonl_path, "a")

    def rewind(self, step: int) -> None:
        """Forget every row with ``step >= step`` (history and metrics.jsonl, rewritten atomically), so
        those iterations can run again. wandb keeps what it already got: it ignores steps it has seen."""
        self.history = [r for r in self.history if r["step"] < step]
        self._rewrite_jsonl()

    def phase_done(self, phase: str, seconds: float) -> None:
        bar = self.bars.get(phase)
        if bar is not None:
            bar.set_postfix_str(f"{seconds:.2f}s")
            bar.update(1)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        row = {"step": step, **{k: (float(v) if isinstance(v, (int, float)) else v) for k, v in metrics.items()}}
        self.history.append(row)
        self._jsonl.write(json.dumps(row) + "\n")
        self._jsonl.flush()
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)
        head = format_headline(metrics)
        t = metrics.get("timing/step")
        msg = f"[iter {step:3d}] {head}" + (f"  step={t:.2f}s" if t is not None else "")
        if self.bars:
            from tqdm.auto import tqdm

            tqdm.write(msg)
        else:
            print(msg, flush=True)

    def plot(self, path: Optional[str] = None) -> Optional[str]:
        if not self.history:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        path = path or str(self.out_dir / "training_curves.png")
        steps = [h["step"] for h in self.history]
        fig, axes = plt.subplots(1, 3, figsize=(14, 4))
        for k in ("reward/mean",) + tuple(f"reward/{t}" for t, _ in TYPE_SHORT):
            if any(k in h for h in self.history):
                axes[0].plot(steps, [h.get(k, float("nan")) for h in self.history], label=k.split("/")[-1])
        axes[0].set_title("reward")
        keys = [k for k in self.history[-1] if k.startswith("consultation/") and k != "consultation/groups_both_modes"]
        for k in keys:
            style = "-" if k.split("/", 1)[-1] in ("needs_rules", "no_rules", "targeting_gap") else ":"
            axes[1].plot(steps, [h.get(k, float("nan")) for h in self.history], style, label=k.split("/", 1)[-1])
        axes[1].set_title("consultation rate")
        for ph in PHASES:
            axes[2].plot(steps, [h.get(f"timing/{ph}", float("nan")) for h in self.history], label=ph)
        axes[2].set_title("seconds per phase")
        for ax in axes:
            ax.set_xlabel("iteration")
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self._jsonl.close()
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None
