"""One command, real data: pool -> ASCL demos -> SFT -> RL (IFPO) -> eval at three stages -> one summary.

    .venv/bin/python -m launch.real_pipeline [--out runs/real] [--set KEY=VALUE ...] [--force STAGE ...]
        [--only STAGE ...] [--dry-run] [--cmd STAGE='shell command' ...] [--extra STAGE='hydra overrides']
    make real-demo ARGS='--dry-run'

Stages, in order (each a subprocess, except ``summary``):

  data      python -m ascl_ray.data.pool --out OUT/pool.jsonl --seed S
  answers   ascl-ray cada-chains method=plain data.types=[benign_sensitive]: the model's own answers to the
            benign look-alikes, kept where the judge accepts them (complied)   -> OUT/answers.jsonl
  demos     python -m ascl_ray.sft_demos --pool OUT/pool.jsonl --out OUT/demos.jsonl ... model=M
  eval_zs   ascl-ray eval on the untrained model (ASCL-ZS)          -> OUT/eval/zero_shot/report.json
  sft       ascl-ray sft --data OUT/demos.jsonl --out OUT/sft        -> OUT/sft/final
  eval_sft  ascl-ray eval model.path=OUT/sft/final                  -> OUT/eval/sft/report.json
  rl        ascl-ray train ... model.path=OUT/sft/final trainer.save_every=N trainer.resume=auto -> OUT/rl/final
  eval_rl   ascl-ray eval model.path=OUT/rl/final                   -> OUT/eval/rl/report.json
  summary   OUT/summary.md + OUT/summary.json: the three eval reports in one table per prompt type
            (safety rate on harmful sets, refusal rate on benign look-alikes, accuracy on math,
            consultation rate; value, 95 % CI and n as the eval report computed them) + wall time per stage

A stage is skipped when its marker ``OUT/done/STAGE.json`` exists; the marker is written (atomically,
with the command and the wall time) only after the command exits 0, so a failed or killed stage is
rerun next time: the pipeline stops at the first failure and a rerun resumes there (RL itself resumes
from its newest checkpoint, ``trainer.resume=auto``; delete OUT/rl to restart it from scratch).
``--force STAGE`` reruns that stage only (downstream markers are kept), ``--only STAGE`` runs only the
named stage(s), ``--dry-run`` prints every command and whether it would run. Output per stage goes to
the console and ``OUT/logs/STAGE.log``.

Sizes (``Sizes``, overridable with ``--set key=value``) are chosen for 2 CPU cores and SmolLM2-135M;
commands are built in one place (``build_stages``); ``--cmd`` replaces a stage's command (stand-ins in
tests), ``--extra`` appends Hydra overrides to an ascl-ray stage.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

REPO = Path(__file__).resolve().parent.parent
STAGES = ("data", "answers", "demos", "eval_zs", "sft", "eval_sft", "rl", "eval_rl", "summary")
EVAL_STAGES = {"eval_zs": "zero_shot", "eval_sft": "sft", "eval_rl": "rl"}
# what a row of the summary reports for each prompt type: (metric, label)
HEADLINES = {"harmful": ("safety_rate", "safety rate ↑"), "benign_sensitive": ("refusal_rate", "over-refusal ↓"),
             "math": ("avg_at_k", "accuracy ↑"), "gray_zone": ("avg_at_k", "accuracy ↑")}


@dataclass
class Sizes:
    """Every size of the pipeline (``--set key=value``). RL budget: SmolLM2-135M on 2 CPU cores measured
    ~60-100 s per step at 8 prompts x 4 samples x 64 tokens (one optimizer step); a consulted answer needs
    ~42 (call) + ~80 (rules, masked) + ~30 (refusal) tokens, GSM8K solutions ~100, so 192 tokens per episode:
    ~130-170 s per step -> 30 steps + start-up + 6 checkpoints (~8 s each) stay under ~90 min."""

    seed: int = 0
    model: str = "smollm2_135m"
    # demos
    demos_per_type: int = 64            # seeded subsample per prompt type of the pool
    benign_consult_rate: float = 0.25
    answers: Optional[str] = None       # jsonl {prompt_id, answer} for benign look-alikes (else the answers stage's)
    # answers stage: the zero-shot model's own answers to the pool's benign look-alikes (method=plain), kept
    # where the reward pool's judge accepts them (a compliance, not a refusal): ascl-ray cada-chains
    self_answers: bool = True
    answers_samples: int = 2
    # SFT: ~192 demos x 2 epochs / 16 = 24 optimizer steps
    sft_epochs: int = 2
    sft_batch_size: int = 16
    sft_lr: float = 5e-5                # [guess, unmeasured] enough to learn the call format in ~24 steps
    # RL (IFPO, ASCL)
    rl_iterations: int = 30
    rl_prompts_per_iter: int = 8
    rl_samples: int = 4
    rl_max_new_tokens: int = 192
    rl_max_model_len: int = 1536        # the pool's longest prompt (a HarmBench contextual row) is ~1115 tokens
    rl_lr: float = 5e-6                 # [guess, unmeasured] RL on a 135M policy, one optimizer step per iteration
    rl_save_every: int = 5
    # learners of SFT and RL: one ZeRO-3 rank with every core is 1.25x faster per RL step than two single-threaded
    # ranks on this 2-core machine (make bench-trl, "1 learner rank"; no gloo collectives between ranks)
    learner_ranks: int = 1
    learner_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    # rows per forward: the pool's long prompts (~1,100-1,300 tokens) times SmolLM2's 49,152-word vocabulary make
    # ~250 MB of fp32 logits per row, several copies kept for backward; at the preset's 16 rows the SFT learner
    # reached 16-18 GB and Ray's memory monitor killed it (measured twice on this 24 GiB machine)
    learner_micro_batch: int = 2
    # eval (every stage the same: seeded subsample of eval_limit prompts per benchmark)
    eval_limit: int = 30
    eval_seed: int = 0
    eval_suites: str = "safety,over_refusal,utility"
    eval_methods: str = "ascl"
    eval_max_new_tokens: int = 256


@dataclass
class Stage:
    name: str
    cmd: Optional[list[str]] = None               # a subprocess, or
    fn: Optional[Callable[[], None]] = None       # an in-process step (summary)
    outputs: list[str] = field(default_factory=list)


def _py(*args: str) -> list[str]:
    return [sys.executable, *args]


def _eval_cmd(out: Path, s: Sizes, name: str, model_path: Optional[Path]) -> list[str]:
    model = [f"model.path={model_path}", "model.build_tiny=false"] if model_path else []
    return _py("-m", "ascl_ray.cli", "eval", f"model={s.model}", *model, "method=ascl",
               f"eval.suites=[{s.eval_suites}]", f"eval.methods=[{s.eval_methods}]", f"eval.limit={s.eval_limit}",
               f"eval.seed={s.eval_seed}", f"rollout.max_new_tokens={s.eval_max_new_tokens}",
               f"trainer.seed={s.seed}", f"eval.out_dir={out / 'eval' / name}")


def build_stages(out: Path, s: Sizes, commands: Optional[dict[str, list[str]]] = None,
                 extra: Optional[dict[str, list[str]]] = None) -> list[Stage]:
    """The stages with their commands (``commands`` replaces one, ``extra`` appends overrides)."""
    commands, extra = commands or {}, extra or {}
    pool, demos, sft, rl = out / "pool.jsonl", out / "demos.jsonl", out / "sft", out / "rl"
    self_answers = out / "answers.jsonl"
    answers = s.answers or (str(self_answers) if s.self_answers else None)
    learner = [f"learner.num_actors={s.learner_ranks}", f"learner.torch_threads={s.learner_threads}",
               f"learner.micro_batch_size={s.learner_micro_batch}"]     # the SFT and the RL learners alike
    cmds = {
        "data": _py("-m", "ascl_ray.data.pool", "--out", str(pool), "--seed", str(s.seed)),
        "answers": (_py("-m", "ascl_ray.cli", "cada-chains", f"model={s.model}", "method=plain", "data.source=jsonl",
                        f"data.path={pool}", "data.types=[benign_sensitive]", "data.eval_frac=0",
                        f"rollout.max_new_tokens={s.rl_max_new_tokens}", f"rollout.max_model_len={s.rl_max_model_len}",
                        f"trainer.seed={s.seed}", "--samples", str(s.answers_samples), "--seed", str(s.seed),
                        "--out", str(self_answers))
                    if s.self_answers and not s.answers else
                    _py("-c", "print('answers: not generated (Sizes.answers given or self_answers=false)')")),
        "demos": _py("-m", "ascl_ray.sft_demos", "--pool", str(pool), "--out", str(demos), "--seed", str(s.seed),
                     "--max-per-type", str(s.demos_per_type), "--benign-consult-rate", str(s.benign_consult_rate),
                     *(["--answers", answers] if answers else []), f"model={s.model}", "method=ascl"),
        "eval_zs": _eval_cmd(out, s, "zero_shot", None),
        "sft": _py("-m", "ascl_ray.cli", "sft", f"model={s.model}", "method=ascl", "--data", str(demos),
                   "--out", str(sft), "--epochs", str(s.sft_epochs), "--batch-size", str(s.sft_batch_size),
                   "--seed", str(s.seed), f"learner.lr={s.sft_lr}", f"trainer.seed={s.seed}",
                   *learner),
        "eval_sft": _eval_cmd(out, s, "sft", sft / "final"),
        "rl": _py("-m", "ascl_ray.cli", "train", f"model={s.model}", f"model.path={sft / 'final'}",
                  "model.build_tiny=false", "method=ascl", "algorithm=ifpo", "data.source=jsonl",
                  f"data.path={pool}", f"trainer.out_dir={rl}", f"trainer.iterations={s.rl_iterations}",
                  f"trainer.save_every={s.rl_save_every}", "trainer.resume=auto", f"trainer.seed={s.seed}",
                  f"data.prompts_per_iter={s.rl_prompts_per_iter}", f"rollout.n_samples={s.rl_samples}",
                  f"rollout.max_new_tokens={s.rl_max_new_tokens}", f"rollout.max_model_len={s.rl_max_model_len}",
                  f"learner.lr={s.rl_lr}", "learner.epochs=1", "learner.num_mini_batches=1",
                  *learner),
        "eval_rl": _eval_cmd(out, s, "rl", rl / "final"),
    }
    outputs = {"data": [pool], "answers": [self_answers] if s.self_answers and not s.answers else [],
               "demos": [demos], "sft": [sft / "final"], "rl": [rl / "final"],
               **{k: [out / "eval" / v / "report.json"] for k, v in EVAL_STAGES.items()},
               "summary": [out / "summary.md", out / "summary.json"]}
    unknown = sorted((set(commands) | set(extra)) - set(STAGES))
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; stages: {list(STAGES)}")
    stages = []
    for name in STAGES:
        outs = [str(p) for p in outputs[name]]
        if name in commands:
            stages.append(Stage(name, cmd=list(commands[name]), outputs=outs))
        elif name == "summary":
            stages.append(Stage(name, fn=lambda: write_summary(out, s), outputs=outs))
        else:
            stages.append(Stage(name, cmd=cmds[name] + list(extra.get(name, [])), outputs=outs))
    return stages


# ---------------------------------------------------------------------------------------------- running
def marker(out: Path, stage: str) -> Path:
    return out / "done" / f"{stage}.json"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _run_cmd(cmd: list[str], log_path: Path) -> int:
    """Run ``cmd`` in the repo root, its output to the console and ``log_path``; the exit status."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        log.write(f"\n$ {shlex.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace")
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            log.write(line)
        return proc.wait()


def run_pipeline(stages: Sequence[Stage], out: Path, *, force: Sequence[str] = (), only: Sequence[str] = (),
                 dry_run: bool = False) -> int:
    """Run the stages in order, skipping those with a marker; 0 when every selected stage is done, else the
    failing stage's exit status (its marker is not written and the stages after it do not run)."""
    names = [st.name for st in stages]
    bad = sorted((set(force) | set(only)) - set(names))
    if bad:
        raise ValueError(f"unknown stage(s) {bad}; stages: {names}")
    for st in stages:
        mk = marker(out, st.name)
        if only and st.name not in only:
            continue
        if st.name in force and not dry_run:
            mk.unlink(missing_ok=True)
        todo = st.name in force or not mk.exists()
        what = shlex.join(st.cmd) if st.cmd is not None else f"(in process) {st.name}"
        if dry_run:
            print(f"[{st.name}] {'run ' if todo else 'skip (done)'}: {what}")
            continue
        if not todo:
            print(f"[pipeline] {st.name}: done ({mk}), skipped", flush=True)
            continue
        print(f"[pipeline] {st.name}: {what}", flush=True)
        t0 = time.time()
        if st.cmd is not None:
            rc = _run_cmd(st.cmd, out / "logs" / f"{st.name}.log")
        else:
            try:
                st.fn()   # type: ignore[misc]
                rc = 0
            except Exception as e:   # noqa: BLE001  -- reported like a failed command
                print(f"[pipeline] {st.name}: {type(e).__name__}: {e}", flush=True)
                rc = 1
        secs = time.time() - t0
        if rc != 0:
            print(f"[pipeline] {st.name} FAILED (exit {rc}) after {secs:.0f}s; log: {out / 'logs' / st.name}.log; "
                  "rerun the same command to resume here", flush=True)
            return rc
        _write_atomic(mk, json.dumps({"stage": st.name, "cmd": st.cmd, "seconds": secs, "outputs": st.outputs,
                                      "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=2) + "\n")
        print(f"[pipeline] {st.name}: done in {secs:.0f}s", flush=True)
    return 0


# ---------------------------------------------------------------------------------------------- summary
def _cell(est: Optional[dict], scale: float = 100.0) -> str:
    if not est or est.get("value") is None:
        return "–"
    v = f"{est['value'] * scale:.1f}"
    if est.get("lo") is not None and est.get("hi") is not None:
        v += f" [{est['lo'] * scale:.1f}, {est['hi'] * scale:.1f}]"
    return v + f" (n={est.get('n', '?')})"


def collect(out: Path) -> dict:
    """The three eval reports -> {stage: {method: {prompt_type: {metric: estimate}}}} + wall times."""
    evals: dict = {}
    for stage, name in EVAL_STAGES.items():
        p = out / "eval" / name / "report.json"
        if not p.exists():
            continue
        rep = json.loads(p.read_text())
        evals[name] = {}
        for m, summ in rep["summaries"].items():
            evals[name][m] = {}
            for t, blk in summ.get("by_prompt_type", {}).items():
                keys = (HEADLINES.get(t, ("safety_rate",))[0], "consultation_rate", "mean_response_len")
                evals[name][m][t] = {k: blk["metrics"].get(k) for k in keys}
                evals[name][m][t].update(n_prompts=blk.get("n_prompts"), n_samples=blk.get("n_samples"))
    walls = {}
    for st in STAGES:
        mk = marker(out, st)
        if mk.exists():
            walls[st] = json.loads(mk.read_text()).get("seconds")
    return {"evals": evals, "wall_seconds": walls}


def write_summary(out: Path, s: Sizes) -> dict:
    data = collect(out)
    if not data["evals"]:
        raise FileNotFoundError(f"no eval report under {out / 'eval'}")
    data["sizes"] = dataclasses.asdict(s)
    demo_sum = out / "demos.summary.json"
    if demo_sum.exists():
        data["demos"] = json.loads(demo_sum.read_text())
    lines = ["# Real-data pipeline: zero-shot -> SFT -> RL", "",
             "Values in %, [95 % CI] as computed by the eval report, n = prompts the CI is over "
             "(pooled over the benchmarks of each prompt type).", ""]
    types = sorted({t for ev in data["evals"].values() for m in ev.values() for t in m},
                   key=lambda t: list(HEADLINES).index(t) if t in HEADLINES else 99)
    header = ["stage", "method"] + [f"{t}: {HEADLINES.get(t, ('', 'safety rate ↑'))[1]}" for t in types] \
        + [f"{t}: consultation" for t in types]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, ev in data["evals"].items():
        for m, by_t in ev.items():
            cells = [_cell(by_t.get(t, {}).get(HEADLINES.get(t, ("safety_rate",))[0])) for t in types]
            cells += [_cell(by_t.get(t, {}).get("consultation_rate")) for t in types]
            lines.append("| " + " | ".join([name, m, *cells]) + " |")
    lines += ["", "| stage | wall time |", "|---|---|"]
    lines += [f"| {st} | {sec / 60:.1f} min |" for st, sec in data["wall_seconds"].items() if sec is not None]
    if "demos" in data:
        lines += ["", f"Demos: {data['demos'].get('n_lines')} lines; benign answers: "
                      f"{data['demos'].get('benign_answers')}."]
    lines += ["", "Sizes: `" + json.dumps(data["sizes"]) + "`", ""]
    _write_atomic(out / "summary.json", json.dumps(data, indent=2) + "\n")
    _write_atomic(out / "summary.md", "\n".join(lines))
    return data


# ---------------------------------------------------------------------------------------------- CLI
def _kv(items: Sequence[str], what: str) -> dict[str, str]:
    out = {}
    for it in items:
        if "=" not in it:
            raise SystemExit(f"{what}: expected KEY=VALUE, got {it!r}")
        k, v = it.split("=", 1)
        out[k.strip()] = v
    return out


def sizes_from(sets: dict[str, str]) -> Sizes:
    fields = {f.name: f for f in dataclasses.fields(Sizes)}
    vals = {}
    for k, v in sets.items():
        if k not in fields:
            raise SystemExit(f"--set: unknown size {k!r}; known: {sorted(fields)}")
        typ = type(getattr(Sizes(), k))
        if typ is bool:
            if v.lower() not in ("true", "false", "1", "0"):
                raise SystemExit(f"--set {k}={v}: expected true or false")
            vals[k] = v.lower() in ("true", "1")
            continue
        vals[k] = None if v.lower() in ("null", "none") else (typ(v) if typ in (int, float) else v)
    return Sizes(**vals)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m launch.real_pipeline", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    p.add_argument("--out", default="runs/real", help="output folder (default runs/real)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a size (Sizes field)")
    p.add_argument("--force", action="append", default=[], metavar="STAGE", help=f"rerun a stage: {STAGES}")
    p.add_argument("--only", action="append", default=[], metavar="STAGE", help="run only this stage (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--cmd", action="append", default=[], metavar="STAGE=CMD", help="replace a stage's command")
    p.add_argument("--extra", action="append", default=[], metavar="STAGE=OVERRIDES",
                   help="append Hydra overrides to a stage's command")
    a = p.parse_args(argv)
    out = Path(a.out).resolve()
    s = sizes_from(_kv(a.set, "--set"))
    try:
        stages = build_stages(out, s, {k: shlex.split(v) for k, v in _kv(a.cmd, "--cmd").items()},
                              {k: shlex.split(v) for k, v in _kv(a.extra, "--extra").items()})
        rc = run_pipeline(stages, out, force=a.force, only=a.only, dry_run=a.dry_run)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if rc == 0 and not a.dry_run and (out / "summary.md").exists():
        print(f"[pipeline] summary: {out / 'summary.md'}")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
