"""wandb (offline by default) + console + a metrics.jsonl file + a training-curve PNG, and batches.jsonl: what
each iteration trained on (prompt ids, group ids, a digest per rollout), so two runs can be compared."""

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
METRICS_FILE = "metrics.jsonl"
BATCHES_FILE = "batches.jsonl"


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
    """The rows of a metrics.jsonl (or batches.jsonl); a line that does not parse (a crash mid-write) is skipped."""
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


def _rewrite_rows(path: Path, rows: list[dict[str, Any]]) -> Any:
    """Replace the jsonl ``path`` with ``rows`` in one rename; returns it opened for appending."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return open(path, "a")


class Tracker:
    """Metrics of one run: ``history`` (rows ``{"step": s, **metrics}``), ``metrics.jsonl`` in ``out_dir``
    (one row per ``log``), wandb (``mode``: offline | online | disabled) and the console. A ``batch``
    given to ``log`` goes to ``batches.jsonl`` only (``{"step": s, **batch}``: ids and digests, no metrics).

    A fresh run (``resume_step`` None) truncates both files. A resumed run (``resume_step`` = the
    first step it will log) keeps the rows of the earlier steps (``step < resume_step``): the files are
    rewritten atomically with just those rows, ``history`` starts with them, and new rows are appended.
    ``wandb_id`` continues that wandb run (``resume="allow"``); ``self.wandb_id`` is the run's id (None
    with wandb disabled), for the checkpoint to record."""

    def __init__(self, out_dir: str, config: dict, *, mode: str = "offline", project: str = "ascl-ray",
                 run_name: Optional[str] = None, progress: bool = True, total: int = 0,
                 resume_step: Optional[int] = None, wandb_id: Optional[str] = None):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.history: list[dict[str, Any]] = []
        self._jsonl: Any = None
        self._batches: Any = None
        if resume_step is None:
            self._jsonl = open(self._jsonl_path, "w")   # a fresh run: never append to an old one
            self._batches = open(self.out_dir / BATCHES_FILE, "w")
        else:
            self.history = [r for r in _read_rows(self._jsonl_path) if r["step"] < resume_step]
            self._rewrite_jsonl(resume_step)
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
        return self.out_dir / METRICS_FILE

    @property
    def wandb_id(self) -> Optional[str]:
        """The wandb run id (pass it back as ``wandb_id`` to continue the run); None with wandb disabled."""
        return self._wandb_id

    def _rewrite_jsonl(self, step: int) -> None:
        """Replace metrics.jsonl with ``history`` and batches.jsonl with its rows before ``step``, each in
        one rename, then append to them."""
        for f in (self._jsonl, self._batches):
            if f is not None:
                f.close()
        self._jsonl = _rewrite_rows(self._jsonl_path, self.history)
        batches = self.out_dir / BATCHES_FILE
        self._batches = _rewrite_rows(batches, [r for r in _read_rows(batches) if r["step"] < step])

    def rewind(self, step: int) -> None:
        """Forget every row with ``step >= step`` (history, metrics.jsonl and batches.jsonl, rewritten
        atomically), so those iterations can run again. wandb keeps what it already got: it ignores steps
        it has seen."""
        self.history = [r for r in self.history if r["step"] < step]
        self._rewrite_jsonl(step)

    def phase_done(self, phase: str, seconds: float) -> None:
        bar = self.bars.get(phase)
        if bar is not None:
            bar.set_postfix_str(f"{seconds:.2f}s")
            bar.update(1)

    def log(self, metrics: dict[str, Any], step: int, batch: Optional[dict[str, Any]] = None) -> None:
        row = {"step": step, **{k: (float(v) if isinstance(v, (int, float)) else v) for k, v in metrics.items()}}
        self.history.append(row)
        if batch is not None:       # before the metrics row: a step whose metrics are there has its batch
            self._batches.write(json.dumps({"step": step, **batch}) + "\n")
            self._batches.flush()
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
        self._batches.close()
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None
