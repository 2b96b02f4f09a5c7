"""Hydra-style multirun: ``ascl-ray train -m algorithm=grpo,ifpo trainer.seed=0,1,2``.

Sweep overrides (``key=a,b,c``, ``key=range(0,3)``, ``key=choice(a,b)`` -- Hydra's own override grammar)
expand to their cartesian product, in the order written. Each run is its own process
(``python -m ascl_ray.cli train <overrides> trainer.out_dir=<sweep>/<n>_<name>``), one after another by
default, so a crash of one run (even a hard one) never takes the sweep down: it is reported and the rest
continue. The sweep folder (``hydra.sweep.dir=DIR``, default ``runs/multirun/<date>_<time>``) gets
``sweep.json`` and ``sweep.md``: every run's overrides, folder, status, seconds and, for a failed run,
the tail of its log. Exit status 0 only when every run succeeded.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

SWEEP_DIR_KEY = "hydra.sweep.dir"


def expand(overrides: list[str]) -> tuple[list[list[str]], Optional[str]]:
    """Overrides -> (one override list per run, the ``hydra.sweep.dir`` value or None). Uses Hydra's
    override parser, so quoting, ``range()`` and ``choice()`` work as in ``python app.py -m``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from ascl_ray.config import ConfigError

    sweep_dir = None
    rest = []
    for o in overrides:
        if o.startswith(SWEEP_DIR_KEY + "="):
            sweep_dir = o.split("=", 1)[1]
        else:
            rest.append(o)
    try:
        parsed = OverridesParser.create().parse_overrides(rest)
    except Exception as e:  # noqa: BLE001 - hydra's OverrideParseException and friends
        raise ConfigError(f"multirun overrides {rest}: {e}".replace("\n", " ")) from None
    axes = []
    for o in parsed:
        if o.is_sweep_override():
            key = o.get_key_element()
            axes.append([f"{key}={v}" for v in o.sweep_string_iterator()])
        else:
            axes.append([o.input_line])
    return [list(c) for c in itertools.product(*axes)], sweep_dir


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def run_name(num: int, overrides: list[str], swept: set[str]) -> str:
    """``<num>_<key-value_...>`` over the swept keys only (last part of a dotted key), safe as a folder
    name and as a Hydra override value (no ``=``, ``,``, quotes or spaces)."""
    parts = [o for o in overrides if _key(o) in swept]
    name = "_".join(f"{_key(p).split('.')[-1]}-{p.split('=', 1)[1]}" for p in parts) or "run"
    return f"{num}_" + re.sub(r"[^A-Za-z0-9._+-]", "-", name)[:120]


def run_sweep(overrides: list[str], *, python: Optional[str] = None, dry_run: bool = False,
              log=print) -> int:
    """Expand, run each combination sequentially in its own process; returns the number of failed runs."""
    runs, sweep_dir = expand(overrides)
    if any(_key(o) == "trainer.out_dir" for o in overrides):
        from ascl_ray.config import ConfigError

        raise ConfigError("trainer.out_dir: set by the sweep for each run; choose the sweep folder with "
                          f"{SWEEP_DIR_KEY}=DIR")
    values: dict[str, set[str]] = {}
    for combo in runs:
        for o in combo:
            values.setdefault(_key(o), set()).add(o)
    swept = {k for k, v in values.items() if len(v) > 1}
    root = Path(sweep_dir or f"runs/multirun/{time.strftime('%Y-%m-%d_%H-%M-%S')}")
    root.mkdir(parents=True, exist_ok=True)
    records = []
    for num, combo in enumerate(runs):
        out = root / run_name(num, combo, swept)
        cmd = [python or sys.executable, "-m", "ascl_ray.cli", "train", *combo, f"trainer.out_dir={out}"]
        rec = {"num": num, "overrides": combo, "out_dir": str(out), "command": cmd[1:], "status": "pending"}
        records.append(rec)
        log(f"[sweep] run {num + 1}/{len(runs)}: {' '.join(combo)} -> {out}")
        if dry_run:
            rec["status"] = "dry_run"
            continue
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with open(out / "train.log", "w") as logf:
            rc = subprocess.call(cmd, stdout=logf, stderr=subprocess.STDOUT, env=dict(os.environ))
        rec["seconds"] = round(time.perf_counter() - t0, 1)
        rec["returncode"] = rc
        rec["status"] = "ok" if rc == 0 else "failed"
        if rc != 0:
            tail = (out / "train.log").read_text(errors="replace").strip().splitlines()[-15:]
            rec["error_tail"] = tail
            log(f"[sweep] run {num} FAILED (exit {rc}); the sweep continues. Last lines:\n  " + "\n  ".join(tail[-5:]))
        else:
            log(f"[sweep] run {num} ok in {rec['seconds']:.0f}s")
        _write_reports(root, overrides, records)
    _write_reports(root, overrides, records)
    failed = [r for r in records if r["status"] == "failed"]
    log(f"[sweep] {len(records) - len(failed)}/{len(records)} runs ok; summary: {root / 'sweep.md'}"
        + (f"; failed: {[r['num'] for r in failed]}" if failed else ""))
    return len(failed)


def _write_reports(root: Path, overrides: list[str], records: list[dict]) -> None:
    (root / "sweep.json").write_text(json.dumps({"overrides": overrides, "runs": records}, indent=2))
    lines = [f"# sweep: `ascl-ray train -m {' '.join(overrides)}`", "", "| # | overrides | status | seconds | folder |",
             "|---|---|---|---:|---|"]
    for r in records:
        lines.append(f"| {r['num']} | `{' '.join(r['overrides'])}` | {r['status']} | {r.get('seconds', '')} | "
                     f"{r['out_dir']} |")
    for r in records:
        if r["status"] == "failed":
            lines += ["", f"## run {r['num']} failed (exit {r['returncode']})", "```", *r["error_tail"], "```"]
    (root / "sweep.md").write_text("\n".join(lines) + "\n")
