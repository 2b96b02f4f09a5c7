"""``make bench-trl``: ascl-ray against TRL's ``GRPOTrainer`` on the same model and batch (issue 14).

One command, one table: both trainers run as subprocesses on the same work, interleaved A B B A (two
runs each), and the medians of the measured steps (the first ``--warmup`` steps of each run dropped)
go into rows of ``ascl_ray.bench``'s format, with the ratio ascl-ray step / TRL step.

The work (both arms; every number comes from ONE composed ascl-ray config, so ``overrides`` change
both arms alike): ``--n-prompts`` synthetic arithmetic prompts ("What is 17 + 25?", GSM8K-style
reference ``#### 42``) written once as a jsonl of PromptRow fields; ``data.prompts_per_iter`` prompts x
``rollout.n_samples`` samples per step, exactly ``rollout.max_new_tokens`` new tokens (``rollout.min_new_tokens``
= max: no eos before it, vLLM's ``min_tokens`` / transformers' ``min_new_tokens``), temperature
``rollout.temperature``; one optimizer step per RL step; fp32; no KL; lr ``learner.lr``; reward = the
project's math verifier (1 correct, else 0). Both arms see the same prompts in the same order: the TRL
dataset is the sequence ascl-ray's ``PromptSampler`` draws, fed unshuffled.

- ascl-ray arm: ``python -m ascl_ray.cli train method=plain algorithm=grpo ...``; per-step ``timing/*``
  from the run's ``metrics.jsonl``; start-up = process start to the end of the first step (the
  first metrics line's write time) minus that step's ``timing/step``.
- TRL arm: ``trl==1.16.0`` installed into ``.cache/bench-trl/site`` (``pip install --target``, no deps:
  every requirement must already be met by the project's venv or is installed there with ``--no-deps``
  under a constraints file pinning the venv's torch/transformers/accelerate/datasets), run by the
  venv's python with ``PYTHONPATH=<site>``: the project environment is untouched and TRL is no project
  dependency. ``GRPOTrainer`` with transformers ``generate`` (``use_vllm=False``), fp32 on CPU,
  ``beta=0``, ``num_iterations=1``; a callback times each optimizer step, a subclass times generation
  (``_generate_single_turn``); train = step - generation. Start-up = process start to the first step.

    python -m ascl_ray.bench_trl                        # SmolLM2-135M-Instruct, A B B A, 2 + 5 steps per run
    python -m ascl_ray.bench_trl --model tiny --steps 4 --warmup 1 --runs 1   # a quick check
    python -m ascl_ray.bench_trl learner.lr=1e-5        # extra ascl-ray overrides (both arms follow)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ascl_ray.bench_table import _row, format_table

TRL_VERSION = "1.16.0"
DEFAULT_SITE = ".cache/bench-trl/site"
A, B = "ascl-ray", "TRL"
# the work: plain GRPO, 8 prompts x 4 samples, exactly 64 new tokens (no eos before max_new_tokens, in both
# arms: a policy drifting to short answers must not shrink one arm's work), one optimizer step per RL step, no KL
WORK_OVERRIDES = ["method=plain", "algorithm=grpo", "data.source=jsonl", "data.eval_frac=0",
                  "data.prompts_per_iter=8", "rollout.n_samples=4", "rollout.max_new_tokens=64",
                  "rollout.min_new_tokens=${rollout.max_new_tokens}",
                  "rollout.temperature=1.0", "learner.epochs=1", "learner.num_mini_batches=1",
                  "algorithm.kl_coef=0"]


# ------------------------------------------------------------------------------------------ pure parts
def math_prompts(n: int, seed: int = 0) -> list:
    """``n`` distinct GSM8K-style arithmetic PromptRows ("What is 17 + 25?", reference ``#### 42``):
    two-digit operands, + or - (never negative), deterministic for ``seed``."""
    from ascl_ray.batch import PromptRow

    rng = random.Random(seed)
    seen: set = set()
    rows = []
    while len(rows) < n:
        a, b, op = rng.randint(10, 99), rng.randint(10, 99), rng.choice("+-")
        if op == "-" and b > a:
            a, b = b, a
        if (a, op, b) in seen:
            continue
        seen.add((a, op, b))
        ans = a + b if op == "+" else a - b
        rows.append(PromptRow(f"bench-math-{len(rows):03d}", f"What is {a} {op} {b}?", "math",
                              reference=f"#### {ans}", math_kind="gsm8k", source="bench_trl"))
    return rows


def rows_to_write(n_train: int, eval_frac: float) -> int:
    """How many rows to write so that ascl-ray's split (which holds out ``max(1, int(n * eval_frac))``
    rows of each prompt type, one even at ``eval_frac=0``) leaves exactly ``n_train`` to train on."""
    n = n_train + 1
    while n - max(1, int(n * eval_frac)) < n_train:
        n += 1
    return n


def write_prompts(path: str, n_train: int, eval_frac: float, seed: int = 0) -> str:
    from ascl_ray.data.synthetic import write_jsonl

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(math_prompts(rows_to_write(n_train, eval_frac), seed), path)
    return path


def abba(runs_per_arm: int, first: str = A, second: str = B, *more: str) -> list[str]:
    """The run order: the arms forward, then backward, ... (``runs_per_arm=2``: A B B A; three arms: A C B B C A),
    so a drift of the machine's speed over the bench hits every arm alike."""
    arms = [first, *more, second]
    out: list[str] = []
    for k in range(runs_per_arm):
        out += arms if k % 2 == 0 else arms[::-1]
    return out


def one_machine_variant(bf16: Optional[bool] = None) -> list[str]:
    """ascl-ray as a one-machine user runs it (README "One machine"): the ``cpu_single`` learner preset (one rank
    on every core, no ZeRO partitioning) and, where the CPU computes bf16 natively, a bf16 rollout engine
    (calibrated sync verification, truncated IS on the mismatch)."""
    from ascl_ray.resources import cpu_has_bf16

    bf16 = cpu_has_bf16() if bf16 is None else bf16
    return ["learner=cpu_single", *(["rollout.dtype=bfloat16"] if bf16 else [])]


def variant_rows(name: str, v: dict, b: dict, label: str) -> list[dict]:
    """Rows of an extra ascl-ray arm (``name``: its overrides) against TRL's summary ``b``."""
    sec = f"vs TRL GRPOTrainer ({label})"
    return [
        _row(sec, f"{A} [{name}] step", v["step"], "s", f"median of {v['n_steps']} steps"),
        _row(sec, f"{A} [{name}] generation / train", v["generation"], "s", f"train {v['train']:.2f} s"),
        _row(sec, f"{A} [{name}] weight sync (verification included)", v["sync"], "s",
             f"{100 * v['sync'] / v['step']:.1f} % of the step (target <= 10 %)"),
        _row(sec, f"{A} [{name}] start-up", statistics.median(v["startup"]), "s", "target <= 60 s"),
        _row(sec, f"{A} [{name}] step / {B} step", v["step"] / b["step"], "x", "target <= 1"),
    ]


def measured_steps(runs: list[list[dict]], warmup: int) -> list[dict]:
    """The steps that count: each run's steps after its first ``warmup``, pooled over the runs."""
    return [s for steps in runs for s in steps[warmup:]]


def median_of(steps: list[dict], key: str) -> float:
    vals = [s[key] for s in steps if s.get(key) is not None]
    return statistics.median(vals) if vals else float("nan")


@dataclass
class ArmRun:
    """One subprocess run of one arm: per-step timings (``step``, ``generation``, ``train``, ``tokens``;
    ascl-ray also ``sync`` and ``other``), start-up and wall time, seconds."""

    arm: str
    steps: list[dict] = field(default_factory=list)
    startup_s: float = float("nan")
    wall_s: float = float("nan")
    load: list = field(default_factory=list)   # 1-min load average at the start and the end of the run


def summarize(runs: list[ArmRun], warmup: int) -> dict[str, Any]:
    steps = measured_steps([r.steps for r in runs], warmup)
    out: dict[str, Any] = {"n_steps": len(steps), "startup": [r.startup_s for r in runs],
                           "load": [x for r in runs for x in r.load]}
    for k in ("step", "generation", "train", "sync", "other", "score", "tokens"):
        out[k] = median_of(steps, k)
    tot_t = sum(s["step"] for s in steps)
    tot_tok = sum(s.get("tokens", 0.0) for s in steps)
    out["tok_per_s"] = tot_tok / tot_t if tot_t > 0 else float("nan")
    gen_t = sum(s["generation"] for s in steps)
    out["gen_tok_per_s"] = tot_tok / gen_t if gen_t > 0 else float("nan")
    return out


def comparison_rows(a: dict, b: dict, label: str, runs_per_arm: int, warmup: int) -> list[dict]:
    """Rows of ``ascl_ray.bench``'s table from two ``summarize`` results (``a`` ascl-ray, ``b`` TRL)."""
    sec = f"vs TRL GRPOTrainer ({label})"
    rng = lambda xs: f"runs {', '.join(f'{x:.0f}' for x in xs)} s"  # noqa: E731
    load = a.get("load", []) + b.get("load", [])
    med = f"median of {a['n_steps']} steps ({runs_per_arm} runs, {warmup} warm-up steps each dropped)"
    rows = [
        _row(sec, f"{A} step", a["step"], "s", med),
        _row(sec, f"{A} generation (timing/rollout)", a["generation"], "s",
             f"{a['gen_tok_per_s']:.0f} tok/s of generation time"),
        _row(sec, f"{A} train (timing/train)", a["train"], "s"),
        _row(sec, f"{A} weight sync (timing/sync, verification included)", a["sync"], "s",
             f"{100 * a['sync'] / a['step']:.1f} % of the step (target <= 10 %)"),
        _row(sec, f"{A} reward + advantage + orchestration", a["other"], "s"),
        _row(sec, f"{A} start-up (process start to first step)", statistics.median(a["startup"]), "s",
             rng(a["startup"]) + "; target <= 60 s"),
        _row(sec, f"{B} step", b["step"], "s", f"median of {b['n_steps']} steps"),
        _row(sec, f"{B} generation (transformers generate)", b["generation"], "s",
             f"{b['gen_tok_per_s']:.0f} tok/s of generation time"),
        _row(sec, f"{B} train (step - generation)", b["train"], "s",
             f"of which {b['score']:.3g} s reward + advantages, the rest loss, backward, optimizer"),
        _row(sec, f"{B} start-up (process start to first step)", statistics.median(b["startup"]), "s",
             rng(b["startup"])),
        _row(sec, f"{A} step / {B} step", a["step"] / b["step"], "x",
             "target <= 1" + (f"; load average {min(load):.1f}-{max(load):.1f} over the runs" if load else "")),
        _row(sec, f"{A} generated tokens per second of step time", a["tok_per_s"], "tok/s",
             f"median {a['tokens']:.0f} tokens per step"),
        _row(sec, f"{B} generated tokens per second of step time", b["tok_per_s"], "tok/s",
             f"median {b['tokens']:.0f} tokens per step"),
    ]
    return rows


# ------------------------------------------------------------------------------------------ TRL install
def _venv_pins(names: tuple = ("torch", "transformers", "accelerate", "datasets", "tokenizers", "safetensors",
                                "huggingface_hub", "numpy")) -> list[str]:
    import importlib.metadata as md

    pins = []
    for n in names:
        try:
            pins.append(f"{n}=={md.version(n).split('+')[0]}")
        except md.PackageNotFoundError:
            pass
    return pins


def _unmet(dist_name: str, paths: list[str]) -> list[str]:
    """Requirements of installed ``dist_name`` (no extras) not met by a distribution on ``paths``."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    dist = next(iter(md.distributions(name=dist_name, path=paths)), None)
    if dist is None:
        return [dist_name]
    missing = []
    for spec in dist.requires or []:
        req = Requirement(spec)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        have = next(iter(md.distributions(name=req.name, path=paths)), None)
        if have is None or (req.specifier and not req.specifier.contains(have.version.split("+")[0],
                                                                           prereleases=True)):
            missing.append(str(req))
    return missing


def ensure_trl(site: str = DEFAULT_SITE, version: str = TRL_VERSION) -> str:
    """``trl==version`` in ``site`` (installed once with pip's ``--target``, never into the venv); any
    requirement the venv does not meet goes into ``site`` too, one by one with ``--no-deps``, under a
    constraints file that pins the venv's torch/transformers/accelerate/datasets (so nothing heavy is
    pulled and no second torch appears). Returns the absolute site path."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    site_p = Path(site).resolve()
    have = next(iter(md.distributions(name="trl", path=[str(site_p)])), None)
    if have is not None and have.version == version:
        return str(site_p)
    site_p.mkdir(parents=True, exist_ok=True)
    cons = site_p.parent / "constraints.txt"
    cons.write_text("\n".join(_venv_pins()) + "\n")
    pip = [sys.executable, "-m", "pip", "install", "-q", "--upgrade", "--no-deps", "--target", str(site_p),
           "-c", str(cons)]
    subprocess.run(pip + [f"trl=={version}"], check=True)
    paths = [str(site_p)] + [p for p in sys.path if p]
    todo, done = ["trl"], {"trl"}
    while todo:                       # requirements the venv lacks, and theirs: into the site
        for req in _unmet(todo.pop(), paths):
            name = Requirement(req).name
            if name in ("torch", "transformers"):
                raise RuntimeError(f"trl=={version} needs {req}, which the venv does not meet; the bench "
                                   "never installs another torch or transformers")
            if name not in done:
                done.add(name)
                subprocess.run(pip + [req], check=True)
                todo.append(name)
    return str(site_p)


# ------------------------------------------------------------------------------------------ the arms
def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def _group_alive(pgid: int) -> list[int]:
    """Pids still in process group ``pgid`` (Linux /proc; empty elsewhere)."""
    alive = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            alive.append(int(d.name))
    return alive


def _launch(cmd: list[str], env: dict, log: Path, timeout_s: float, label: str, settle_s: float = 120.0,
            poll: Any = None) -> tuple[float, float]:
    """Run ``cmd`` in a process group of its own (output to ``log``), calling ``poll()`` every 0.2 s;
    then wait until every process of its group is gone (Ray's raylet, vLLM's engine core, ...), so that
    the next run starts on an idle machine. Returns (wall-clock start, wall seconds to the exit)."""
    with open(log, "w") as f:
        f.write(" ".join(cmd) + "\n")
        f.flush()
        t0 = time.time()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            while proc.poll() is None:
                if poll is not None:
                    poll()
                if time.time() - t0 > timeout_s:
                    raise TimeoutError(f"{label} run over {timeout_s:.0f}s; log {log}")
                time.sleep(0.2)
            if poll is not None:
                poll()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    wall = time.time() - t0
    t_settle = time.time()
    while _group_alive(proc.pid) and time.time() - t_settle < settle_s:
        time.sleep(0.5)
    left = _group_alive(proc.pid)
    if left:
        print(f"[bench-trl] warning: {label} run left processes {left} after {settle_s:.0f}s", flush=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{label} run failed (exit {proc.returncode}); log {log}:\n{_tail(log)}")
    return t0, wall


def _fresh(out_dir: str) -> Path:
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    return out


def run_ascl(overrides: list[str], steps: int, out_dir: str, timeout_s: float = 7200.0) -> ArmRun:
    """One ascl-ray run as a subprocess (``python -m ascl_ray.cli train``)."""
    out = _fresh(out_dir)
    cmd = [sys.executable, "-m", "ascl_ray.cli", "train", *overrides, f"trainer.iterations={steps}",
           f"trainer.out_dir={out}", "trainer.resume=never", "trainer.save_every=0",
           "tracking.wandb_mode=disabled", "tracking.progress=false"]
    metrics = out / "metrics.jsonl"
    seen: dict[str, float] = {}

    def poll() -> None:
        if "first" not in seen and metrics.exists():
            st = metrics.stat()
            if st.st_size > 0:
                seen["first"] = st.st_mtime     # one line per step: the first step's end

    t0, wall = _launch(cmd, {**os.environ, "HF_HUB_OFFLINE": "1"}, out / "stdout.log", timeout_s, A, poll=poll)
    hist = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    cfg = json.loads((out / "config.json").read_text())
    rows_per_step = cfg["data"]["prompts_per_iter"] * cfg["rollout"]["n_samples"]
    run = ArmRun(A, wall_s=wall)
    for h in hist:
        step = h["timing/step"]
        parts = {k: h.get(f"timing/{k}", 0.0) for k in ("rollout", "train", "sync")}
        run.steps.append({"step": step, "generation": parts["rollout"], "train": parts["train"],
                          "sync": parts["sync"], "other": step - sum(parts.values()),
                          # rollout/model_tokens: mean model tokens per episode
                          "tokens": h.get("rollout/model_tokens", 0.0) * rows_per_step})
    if "first" in seen and run.steps:
        run.startup_s = seen["first"] - t0 - run.steps[0]["step"]
    return run


def run_trl(overrides: list[str], steps: int, out_dir: str, site: str, micro_batch: Optional[int] = None,
            timeout_s: float = 7200.0, threads: Optional[int] = None) -> ArmRun:
    """One TRL GRPOTrainer run as a subprocess of this python with ``PYTHONPATH=<site>``."""
    out = _fresh(out_dir)
    spec = {"overrides": overrides, "steps": steps, "out": str(out), "micro_batch": micro_batch, "threads": threads}
    (out / "spec.json").write_text(json.dumps(spec, indent=2))
    cmd = [sys.executable, "-m", "ascl_ray.bench_trl", "--trl-worker", str(out / "spec.json")]
    pp = [site, *([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": os.pathsep.join(pp)}
    t0, wall = _launch(cmd, env, out / "stdout.log", timeout_s, B)
    recs = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines() if line.strip()]
    run = ArmRun(B, wall_s=wall)
    for r in recs:
        run.steps.append({k: r[k] for k in ("step", "generation", "train", "score", "tokens")})
    if recs:
        run.startup_s = recs[0]["begin_wall"] - t0
    return run


# ------------------------------------------------------------------------------------------ the bench
def model_overrides(model: str) -> list[str]:
    """ascl-ray overrides selecting ``model``: ``smollm2``, ``tiny`` (the embedded tiny model as it is
    built for the default config: never rebuilt for method=plain) or a model folder."""
    if model == "smollm2":
        return ["model=smollm2_135m"]
    if model == "tiny":
        from ascl_ray.cli import compose
        from ascl_ray.runtime import ensure_model

        path = ensure_model(compose([]))
        return [f"model.path={path}", "model.build_tiny=false"]
    return [f"model.path={os.path.abspath(model)}", "model.build_tiny=false", "model.name=custom"]


def bench_trl(model: str = "smollm2", out: str = "runs/bench-trl", steps: int = 7, warmup: int = 2,
              runs_per_arm: int = 2, n_prompts: int = 48, overrides: Optional[list[str]] = None,
              site: str = DEFAULT_SITE, trl_micro_batch: Optional[int] = None,
              timeout_s: float = 7200.0, trl_threads: Optional[int] = None,
              variants: Optional[dict[str, list[str]]] = None) -> list[dict]:
    """Both arms (and ``variants``: extra ascl-ray arms, name -> overrides), interleaved A B B A; returns the
    table rows (raw runs in ``<out>/bench_trl.json``)."""
    from ascl_ray.cli import compose

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if steps - warmup < 1:
        raise ValueError(f"steps={steps} leaves no measured step after warmup={warmup}")
    outp = Path(out)
    outp.mkdir(parents=True, exist_ok=True)
    site = ensure_trl(site)
    prompts = str((outp / "prompts.jsonl").resolve())
    ov = [*WORK_OVERRIDES, *model_overrides(model), f"data.path={prompts}", *(overrides or [])]
    cfg = compose(ov)
    write_prompts(prompts, n_prompts, cfg.data.eval_frac, seed=cfg.trainer.seed)
    label = (f"{cfg.model.name}, {cfg.data.prompts_per_iter} prompts x {cfg.rollout.n_samples}, "
             + (f"{cfg.rollout.max_new_tokens} tokens" if cfg.rollout.min_new_tokens >= cfg.rollout.max_new_tokens
                else f"{cfg.rollout.min_new_tokens}-{cfg.rollout.max_new_tokens} tokens") + f", lr {cfg.learner.lr:g}")
    variants = dict(variants or {})
    order = abba(runs_per_arm, A, B, *variants)
    results: dict[str, list[ArmRun]] = {arm: [] for arm in order}
    if os.getloadavg()[0] > 1.5:   # TRL's one process with a thread per core suffers most from a busy machine
        print(f"[bench-trl] warning: load average {os.getloadavg()[0]:.1f} before the first run: other work "
              "shares the cores and the numbers will show it", flush=True)
    for i, arm in enumerate(order):
        tag = "trl" if arm == B else "ascl" if arm == A else "ascl-" + "".join(c if c.isalnum() else "_" for c in arm)
        run_dir = str(outp / f"run{i}-{tag}")
        t = time.time()
        print(f"[bench-trl] run {i + 1}/{len(order)}: {arm} ({steps} steps) -> {run_dir}", flush=True)
        load0 = os.getloadavg()[0]
        r = (run_trl(ov, steps, run_dir, site, trl_micro_batch, timeout_s, trl_threads) if arm == B
             else run_ascl(ov + variants.get(arm, []), steps, run_dir, timeout_s))
        r.load = [load0, os.getloadavg()[0]]
        results[arm].append(r)
        print(f"[bench-trl]   {arm}: {time.time() - t:.0f}s wall, start-up {r.startup_s:.1f}s, load average "
              f"{r.load[0]:.2f} -> {r.load[1]:.2f}, steps " + ", ".join(f"{s['step']:.1f}" for s in r.steps),
              flush=True)
    sa, sb = summarize(results[A], warmup), summarize(results[B], warmup)
    rows = comparison_rows(sa, sb, label, runs_per_arm, warmup)
    summaries = {A: sa, B: sb}
    for name in variants:
        summaries[name] = summarize(results[name], warmup)
        rows += variant_rows(name, summaries[name], sb, label)
    (outp / "bench_trl.json").write_text(json.dumps(
        {"overrides": ov, "variants": variants, "order": order, "warmup": warmup,
         "runs": {k: [vars(r) for r in v] for k, v in results.items()}, "summary": summaries, "rows": rows},
        indent=2))
    return rows


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--trl-worker"]:
        from ascl_ray.bench_trl_worker import trl_worker

        return trl_worker(argv[1])
    p = argparse.ArgumentParser(description="ascl-ray vs TRL GRPOTrainer on the same work (issue 14).")
    p.add_argument("--model", default="smollm2", help="smollm2 | tiny | a model folder")
    p.add_argument("--steps", type=int, default=7, help="steps per run (warm-up included)")
    p.add_argument("--warmup", type=int, default=2, help="steps dropped at the start of each run")
    p.add_argument("--runs", type=int, default=2, help="runs per arm, interleaved A B B A")
    p.add_argument("--n-prompts", type=int, default=48, help="training prompts (both arms)")
    p.add_argument("--trl-micro-batch", type=int, default=None,
                   help="TRL rows per forward (default learner.micro_batch_size; accumulation makes up the step)")
    p.add_argument("--trl-threads", type=int, default=None,
                   help="torch threads of the TRL process (default torch's: one per core; ascl-ray's actors use 1)")
    p.add_argument("--site", default=DEFAULT_SITE, help="where TRL is installed (pip --target)")
    p.add_argument("--out", default="runs/bench-trl")
    p.add_argument("--timeout", type=float, default=7200.0, help="seconds per run")
    p.add_argument("--variant", action="append", default=None, metavar="NAME=OVERRIDES",
                   help="an extra ascl-ray arm: a name and space-separated overrides (repeatable); default: "
                        "'one machine' (learner=cpu_single, plus rollout.dtype=bfloat16 where the CPU has bf16); "
                        "--variant none: no extra arm")
    p.add_argument("overrides", nargs="*", help="extra ascl-ray hydra overrides (the TRL arm follows them)")
    a = p.parse_args(argv)
    if a.variant is None:
        variants = {"one machine": one_machine_variant()}
    else:
        variants = {}
        for v in a.variant:
            if v == "none":
                continue
            name, sep, ovs = v.partition("=")
            if not sep or not name.strip():
                p.error(f"--variant {v!r}: expected NAME=OVERRIDES, e.g. --variant 'bf16=rollout.dtype=bfloat16'")
            variants[name.strip()] = ovs.split()
    t0 = time.perf_counter()
    rows = bench_trl(a.model, a.out, a.steps, a.warmup, a.runs, a.n_prompts, a.overrides, a.site,
                     a.trl_micro_batch, a.timeout, a.trl_threads, variants)
    table = format_table(rows)
    print(table)
    print(f"\n(bench-trl took {time.perf_counter() - t0:.0f}s)")
    Path(a.out, "bench_trl.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
