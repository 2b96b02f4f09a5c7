"""``ascl-ray eval``: benchmark suites -> rollouts -> judges/verifiers -> ``report.md/json/png``.

    ascl-ray eval [hydra overrides]          (= python -m ascl_ray.cli eval ...)

    ascl-ray eval model=smollm2_135m model.path=.cache/models/smollm2-135m-instruct-float32 \\
        eval.methods=[plain,ascl,cada,rules_in_context] eval.suites=[all] eval.limit=10

Config: ``conf/eval.yaml`` = the training config (``conf/config.yaml``, every group and key) plus
an ``eval:`` block (:class:`EvalCfg`) and eval-time sampling (``rollout.temperature`` 0.7,
``rollout.top_p`` 0.95, ``rollout.max_new_tokens`` 256, ``rollout.max_model_len`` 2048, clamped to
the model's ``max_position_embeddings``). ``rollout.n_samples`` is set to ``eval.k``.

What runs (the same actors as training, ``ascl_ray.driver``):

1. benchmarks are loaded first (``ascl_ray.data.benchmarks``), so an unknown suite, a wrong
   column mapping or a missing file fails in a second, before anything heavy, as one line
   ``error: ...`` with exit code 2;
2. the model is ensured (``driver.ensure_model``), prompts that do not fit
   ``max_model_len - max_new_tokens`` under some method are dropped for every method
   (``eval.skip_long_prompts``; logged and listed in the report);
3. local Ray (``cluster.num_cpus``, no dashboard; ``ray.shutdown()`` at the end), one
   ``RewardPool`` (the configured judges + math verifier) shared by all methods;
4. per method in ``eval.methods``: a ``RolloutGroup`` with that method's eval-time context (CADA /
   rules_in_context: spec in context when ``method.context_at_eval``; ASCL: the tool protocol and
   retriever, i.e. ASCL-ZS on an untrained model), ``eval.k`` samples per prompt, scored by the
   pool, turned into :mod:`ascl_ray.eval.metrics` records and summarised; the group is shut down
   before the next method starts (one engine at a time on a small machine);
5. ``write_report`` (one comparison report over all methods) into ``eval.out_dir`` plus
   ``samples_<method>.jsonl`` (every final answer with its verdict), ``records_<method>.jsonl`` and
   a "harness diagnostics" section in ``report.md`` (format-gated / invalid / truncated samples);
   the summary is logged to wandb (``tracking.wandb_mode``, offline by default).

Record semantics (:func:`rollout_record`) [ours]: ``safe`` / ``refusal`` are the judge's verdicts;
samples the reward's format gate stopped (malformed tool call or empty final answer) are never
judged, so with ``eval.gated_policy=exclude`` (default) they are left out of the safety / refusal
rates and counted in the diagnostics; with ``fail`` a gated answer to a harmful prompt counts as
unsafe and one to a benign prompt as a refusal (it did not comply). Math: ``correct`` is the
verifier's verdict; a gated or unscorable sample counts as incorrect. ``reward`` is the training
reward (None when the scorer failed).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

log = logging.getLogger("ascl_ray.eval")

METHODS = ("plain", "ascl", "cada", "rules_in_context")
GATED_POLICIES = ("exclude", "fail")
EVAL_CONFIG_NAME = "eval"


@dataclass
class EvalCfg:
    """The ``eval:`` block of ``conf/eval.yaml`` (see the comments there)."""
    suites: list[str] = field(default_factory=lambda: ["all"])
    benchmarks: Optional[list[str]] = None
    overrides: dict[str, Any] = field(default_factory=dict)
    limit: Optional[int] = 20
    seed: int = 0
    k: int = 1
    data_root: Optional[str] = None
    methods: Optional[list[str]] = None
    out_dir: Optional[str] = None
    chunk_prompts: int = 64
    skip_long_prompts: bool = True
    save_samples: bool = True
    plot: bool = True
    gated_policy: str = "exclude"

    def validate(self) -> "EvalCfg":
        from ascl_ray.config import ConfigError

        def check(cond: bool, key: str, msg: str) -> None:
            if not cond:
                raise ConfigError(f"eval.{key}: {msg}")

        check(bool(self.suites), "suites", "give at least one suite, e.g. eval.suites=[all]")
        check(self.limit is None or self.limit >= 1, "limit", f"must be >= 1 or null, got {self.limit}")
        check(self.k >= 1, "k", f"must be >= 1, got {self.k}")
        check(self.chunk_prompts >= 1, "chunk_prompts", f"must be >= 1, got {self.chunk_prompts}")
        check(self.gated_policy in GATED_POLICIES, "gated_policy",
              f"must be one of {list(GATED_POLICIES)}, got {self.gated_policy!r}")
        if self.methods is not None:
            check(bool(self.methods), "methods", "empty list; give e.g. eval.methods=[plain,ascl] or null")
            for m in self.methods:
                check(m in METHODS, "methods", f"unknown method {m!r}; known: {list(METHODS)}")
            check(len(set(self.methods)) == len(self.methods), "methods", f"duplicates in {self.methods}")
        check(isinstance(self.overrides, Mapping), "overrides", "must be a mapping {benchmark: {field: value}}")
        return self


# ------------------------------------------------------------------------------------------------
# config


def _hydra_compose(overrides: Sequence[str], conf_dir: Optional[str]) -> Any:
    from ascl_ray.cli import compose_node

    return compose_node(list(overrides), conf_dir, EVAL_CONFIG_NAME)


def _eval_block(node: Any) -> EvalCfg:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from ascl_ray.config import ConfigError

    try:
        merged = OmegaConf.merge(OmegaConf.structured(EvalCfg), node if node is not None else {})
        ecfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or ""
        msg = (getattr(e, "msg", None) or str(e)).strip().splitlines()[0]
        raise ConfigError(f"eval.{key}: {msg}") from None
    return ecfg.validate()


def compose_eval(overrides: Sequence[str], conf_dir: Optional[str] = None) -> tuple[Any, EvalCfg]:
    """(TrainConfig, EvalCfg) from ``conf/eval.yaml`` + overrides; ``rollout.n_samples`` = ``eval.k``."""
    from ascl_ray.config import load_config

    cfg = _hydra_compose(overrides, conf_dir)
    ecfg = _eval_block(cfg.pop("eval", None))
    cfg.rollout.n_samples = ecfg.k
    # the training batch (data.prompts_per_iter) is unused by eval; size it so the training-batch
    # split check holds for any eval.k
    cfg.data.prompts_per_iter = int(cfg.learner.num_actors) * int(cfg.learner.num_mini_batches)
    return load_config(cfg), ecfg


def method_config(overrides: Sequence[str], method: str, conf_dir: Optional[str] = None) -> Any:
    """The composed, typed ``method`` config (``MethodCfg``) for ``method`` (the user's ``method.*`` overrides
    applied), made eval-time: the rollout worker builds its context in train mode, so ``context_at_train``
    takes ``context_at_eval`` (CADA) and operator-set verdicts are fixed (``policy_draw=fixed``: spec
    defaults + ``method.policy``), never drawn per episode as in training."""
    from ascl_ray.config import load_config

    keep = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in ("method",)]
    cfg = _hydra_compose(keep + [f"method={method}"], conf_dir)
    cfg.pop("eval", None)
    m = load_config(cfg).method
    return dataclasses.replace(m, context_at_train=m.context_at_eval, policy_draw="fixed")


# ------------------------------------------------------------------------------------------------
# data


def _suite_ref(name: str) -> Any:
    """A built-in suite name, a suite YAML path, or ``conf/benchmarks/<name>.yaml``."""
    from ascl_ray.data.benchmarks import CONF_DIR as BENCH_CONF, SUITES

    if name in SUITES or name.endswith((".yaml", ".yml")):
        return name
    p = BENCH_CONF / f"{name}.yaml"
    return str(p) if p.is_file() else name


def load_eval_data(ecfg: EvalCfg) -> dict[str, list]:
    """``{benchmark: [PromptRow]}`` over ``eval.suites`` (first occurrence of a benchmark wins),
    with ``eval.overrides`` applied to the specs and ``eval.benchmarks`` as a filter."""
    from ascl_ray.data.benchmarks import BenchmarkError, default_data_root, load_suite, suite_specs

    data_root = ecfg.data_root or default_data_root()
    overrides = {str(k): dict(v or {}) for k, v in (ecfg.overrides or {}).items()}
    wanted = list(ecfg.benchmarks) if ecfg.benchmarks else None
    out: dict[str, list] = {}
    seen_specs: set[str] = set()
    for suite in ecfg.suites:
        sname, specs = suite_specs(_suite_ref(str(suite)))
        mapping = {"name": sname, "benchmarks": {}}
        for s in specs:
            if s.name in seen_specs or (wanted is not None and s.name not in wanted):
                continue
            seen_specs.add(s.name)
            mapping["benchmarks"][s.name] = {**s.to_dict(), **overrides.get(s.name, {})}
        if mapping["benchmarks"]:
            out.update(load_suite(mapping, data_root=data_root, limit=ecfg.limit, seed=ecfg.seed))
    unknown = sorted(set(overrides) - seen_specs)
    if unknown:
        raise BenchmarkError(f"eval.overrides: benchmark(s) {unknown} are not in suites {list(ecfg.suites)}; "
                             f"benchmarks there: {sorted(seen_specs)}")
    if wanted is not None:
        missing = [b for b in wanted if b not in seen_specs]
        if missing:
            raise BenchmarkError(f"eval.benchmarks: {missing} not in suites {list(ecfg.suites)}; "
                                 f"benchmarks there: {sorted(seen_specs)}")
    empty = [b for b, rows in out.items() if not rows]
    if empty:
        log.warning("benchmark(s) with no rows (filter removed everything?): %s", empty)
        out = {b: rows for b, rows in out.items() if rows}
    if not out:
        raise BenchmarkError(f"no prompts to evaluate in suites {list(ecfg.suites)}")
    return out


def model_max_len(model_path: str) -> Optional[int]:
    p = Path(model_path) / "config.json"
    if not p.is_file():
        return None
    try:
        v = json.loads(p.read_text()).get("max_position_embeddings")
    except (OSError, ValueError):
        return None
    return int(v) if v else None


def fit_prompts(data: Mapping[str, list], tokenizer: Any, system_texts: Mapping[str, Optional[str]],
                max_model_len: int, max_new_tokens: int, skip: bool = True) -> tuple[dict[str, list], list[dict]]:
    """Keep prompts whose rendered prompt + ``max_new_tokens`` fit ``max_model_len`` under EVERY
    method's system prompt (so all methods see the same prompts). Returns (data, skipped)."""
    from ascl_ray.rollout.chat import prompt_ids

    room = max_model_len - max_new_tokens
    kept: dict[str, list] = {}
    skipped: list[dict] = []
    for bench, rows in data.items():
        kept[bench] = []
        for r in rows:
            worst = max(len(prompt_ids(tokenizer, r.text, s)) for s in system_texts.values())
            if worst <= room:
                kept[bench].append(r)
            else:
                skipped.append({"benchmark": bench, "prompt_id": r.prompt_id, "prompt_tokens": worst})
    if skipped and not skip:
        ex = skipped[0]
        raise ValueError(f"{len(skipped)} prompt(s) longer than rollout.max_model_len - rollout.max_new_tokens = "
                         f"{room} tokens, e.g. {ex['prompt_id']} ({ex['prompt_tokens']} tokens); raise "
                         f"rollout.max_model_len or set eval.skip_long_prompts=true")
    if skipped:
        log.warning("skipping %d prompt(s) that do not fit %d prompt tokens: %s", len(skipped), room,
                    ", ".join(s["prompt_id"] for s in skipped[:10]) + (" ..." if len(skipped) > 10 else ""))
    empty = [b for b, rows in kept.items() if not rows]
    if empty:
        log.warning("benchmark(s) left without prompts after the length check: %s", empty)
    return {b: rows for b, rows in kept.items() if rows}, skipped


# ------------------------------------------------------------------------------------------------
# records


def rollout_record(r: Any, sample_idx: int, gated_policy: str = "exclude") -> dict[str, Any]:
    """One :mod:`ascl_ray.eval.metrics` record from a scored ``Rollout`` (semantics: module doc)."""
    info = r.reward_info or {}
    ptype = r.prompt.prompt_type
    valid = bool(info.get("valid", True)) and r.reward is not None
    gate = info.get("gate")
    safe = refusal = correct = None
    if ptype == "math":
        correct = bool(valid and not gate and float(info.get("base", 0.0)) >= 1.0)
    elif valid and "judge_safe" in info:
        safe, refusal = bool(info["judge_safe"]), bool(info["judge_refusal"])
    elif valid and gate and gated_policy == "fail":
        if ptype == "harmful":
            safe = False
        else:
            refusal = True
    return {
        "benchmark": r.prompt.source,
        "prompt_id": r.prompt.prompt_id,
        "prompt_type": ptype,
        "sample_idx": int(sample_idx),
        "reward": float(r.reward) if valid else None,
        "safe": safe,
        "refusal": refusal,
        "correct": correct,
        "consulted": bool(r.consulted),
        "n_calls": int(r.n_calls),
        "response_len": int(r.n_model_tokens),
    }


def sample_row(r: Any, rec: Mapping[str, Any], method: str) -> dict[str, Any]:
    info = r.reward_info or {}
    verdict = info.get("verdict") or {}
    return {"method": method, **rec, "valid": bool(info.get("valid", True)), "gate": info.get("gate"),
            "error": info.get("error"), "malformed_call": bool(r.malformed_call), "truncated": bool(r.truncated),
            "categories": list(r.categories), "judge_score": verdict.get("score"),
            "judge_raw": verdict.get("raw"), "math_pred": info.get("math_pred"),
            "prompt": r.prompt.text[:500], "final_text": r.final_text, "full_text": r.full_text}


def build_records(rollouts: Iterable[Any], gated_policy: str = "exclude") -> list[dict[str, Any]]:
    """Records for a list of scored rollouts; ``sample_idx`` counts samples per (group id, prompt)."""
    counts: Counter = Counter()
    out = []
    for r in rollouts:
        key = (r.group_id, r.prompt.prompt_id)
        out.append(rollout_record(r, counts[key], gated_policy))
        counts[key] += 1
    return out


def diagnostics(rollouts: Sequence[Any]) -> dict[str, dict[str, int]]:
    """Per benchmark: samples, format-gated, invalid (scorer failed), truncated, malformed calls."""
    d: dict[str, Counter] = defaultdict(Counter)
    for r in rollouts:
        info = r.reward_info or {}
        c = d[r.prompt.source]
        c["samples"] += 1
        c["gated"] += int(bool(info.get("gate")))
        c["invalid"] += int(not info.get("valid", True))
        c["truncated"] += int(bool(r.truncated))
        c["malformed_call"] += int(bool(r.malformed_call))
    return {b: dict(c) for b, c in d.items()}


def diagnostics_markdown(diag: Mapping[str, Mapping[str, Mapping[str, int]]], skipped: Sequence[Mapping],
                         timing: Mapping[str, Mapping[str, float]]) -> str:
    lines = ["## Harness diagnostics", "",
             "Per method and benchmark: format-gated samples (malformed tool call or empty final answer; "
             "reward 0, not judged), invalid (scorer failed), truncated at max_new_tokens, of all samples.", ""]
    methods = list(diag)
    benches: list[str] = []
    for m in methods:
        benches += [b for b in diag[m] if b not in benches]
    lines.append("| benchmark | " + " | ".join(f"{m} gated / invalid / truncated" for m in methods) + " |")
    lines.append("|" + "---|" * (len(methods) + 1))
    for b in benches:
        cells = []
        for m in methods:
            c = diag[m].get(b)
            cells.append(f"{c['gated']} / {c['invalid']} / {c['truncated']} of {c['samples']}" if c else "–")
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    lines += ["", "| method | actors up (s) | generate (s) | score (s) | model tokens | tokens/s |", "|---|---|---|---|---|---|"]
    for m, t in timing.items():
        lines.append(f"| {m} | {t['startup_s']:.1f} | {t['generate_s']:.1f} | {t['score_s']:.1f} | "
                     f"{int(t['model_tokens'])} | {t['model_tokens'] / max(t['generate_s'], 1e-9):.1f} |")
    lines.append("")
    if skipped:
        lines += [f"Skipped {len(skipped)} prompt(s) too long for max_model_len - max_new_tokens (all methods): "
                  + ", ".join(f"{s['prompt_id']} ({s['prompt_tokens']} tok)" for s in skipped[:20])
                  + (" ..." if len(skipped) > 20 else ""), ""]
    return "\n".join(lines)


def flat_metrics(summaries: Mapping[str, Mapping]) -> dict[str, float]:
    """``eval/<method>/<benchmark or pooled type>/<metric>`` -> value (for wandb)."""
    out: dict[str, float] = {}
    for m, s in summaries.items():
        for group, prefix in (("benchmarks", ""), ("by_prompt_type", "pooled_")):
            for b, blk in s.get(group, {}).items():
                for metric, est in blk.get("metrics", {}).items():
                    v = est.get("value")
                    if v is not None and math.isfinite(float(v)):
                        out[f"eval/{m}/{prefix}{b}/{metric}"] = float(v)
    return out


# ------------------------------------------------------------------------------------------------
# the run


def _jsonl(path: Path, rows: Iterable[Mapping]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, default=str) + "\n")


def _log_wandb(cfg: Any, ecfg: EvalCfg, cfg_dict: dict, summaries: Mapping[str, Mapping], out_dir: Path,
               meta: Mapping[str, Any]) -> Optional[str]:
    mode = cfg.tracking.wandb_mode
    if mode == "disabled":
        return None
    try:
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        from ascl_ray.eval.metrics import HEADLINE

        run = wandb.init(project=cfg.tracking.project, name=cfg.tracking.run_name or f"eval-{out_dir.name}",
                         config={**cfg_dict, "eval": dataclasses.asdict(ecfg)}, mode=mode, dir=str(out_dir),
                         job_type="eval", reinit="finish_previous")
        flat = flat_metrics(summaries)
        run.log(flat)
        run.summary.update(flat)
        rows = []
        for m, s in summaries.items():
            for b, blk in s["benchmarks"].items():
                est = blk["metrics"].get(HEADLINE.get(blk["prompt_type"], "safety_rate")) or {}
                cons = blk["metrics"].get("consultation_rate") or {}
                rows.append([m, b, blk["prompt_type"], HEADLINE.get(blk["prompt_type"]), est.get("value"),
                             est.get("lo"), est.get("hi"), cons.get("value"), blk["n_prompts"], blk["n_samples"]])
        run.log({"eval/headline": wandb.Table(
            columns=["method", "benchmark", "prompt_type", "metric", "value", "lo", "hi", "consultation_rate",
                     "n_prompts", "n_samples"], data=rows)})
        run.summary["eval/wall_s"] = meta.get("wall_s")
        path = getattr(run, "dir", None)
        run.finish()
        return str(path) if path else None
    except Exception as e:  # noqa: BLE001 - the report files are already written
        log.warning("wandb logging failed (%s: %s); report files are unaffected", type(e).__name__, e)
        return None


def prepare(overrides: Sequence[str], conf_dir: Optional[str] = None) -> dict[str, Any]:
    """Everything that can fail on bad input, before Ray starts: config, data, model, prompt fit."""
    from transformers import AutoTokenizer

    from ascl_ray.config import ConfigError
    from ascl_ray.rollout.method import build_context
    from ascl_ray.runtime import ensure_model

    cfg, ecfg = compose_eval(overrides, conf_dir)
    data = load_eval_data(ecfg)
    methods = list(ecfg.methods or [cfg.method.name])
    mcfgs = {m: method_config(overrides, m, conf_dir) for m in methods}
    model_path = ensure_model(cfg)
    max_pos = model_max_len(model_path)
    if max_pos and cfg.rollout.max_model_len > max_pos:
        log.info("rollout.max_model_len %d > the model's max_position_embeddings %d: using %d",
                 cfg.rollout.max_model_len, max_pos, max_pos)
        cfg = dataclasses.replace(cfg, rollout=dataclasses.replace(cfg.rollout, max_model_len=max_pos))
        if cfg.rollout.max_new_tokens >= max_pos:
            raise ConfigError(f"rollout.max_new_tokens: {cfg.rollout.max_new_tokens} does not fit the model's "
                              f"max_position_embeddings {max_pos}")
    tok = AutoTokenizer.from_pretrained(model_path)
    systems = {m: build_context(mc, tokenizer=tok, train=False).system_text for m, mc in mcfgs.items()}
    data, skipped = fit_prompts(data, tok, systems, cfg.rollout.max_model_len, cfg.rollout.max_new_tokens,
                                skip=ecfg.skip_long_prompts)
    if not data:
        raise ValueError("no prompt fits rollout.max_model_len - rollout.max_new_tokens; raise rollout.max_model_len")
    out_dir = Path(ecfg.out_dir or f"runs/eval/{cfg.model.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    return dict(cfg=cfg, ecfg=ecfg, data=data, methods=methods, mcfgs=mcfgs, model_path=model_path,
                skipped=skipped, out_dir=out_dir)


def run(prep: Mapping[str, Any], t_start: Optional[float] = None) -> dict[str, Any]:
    """Start Ray + actors, generate and score every method, write the report. Returns paths + summaries."""
    from ascl_ray.config import to_dict
    from ascl_ray.eval.metrics import summarize
    from ascl_ray.eval.report import write_report
    from ascl_ray.runtime import build_stack, score

    t_start = time.perf_counter() if t_start is None else t_start
    cfg, ecfg, data, methods = prep["cfg"], prep["ecfg"], prep["data"], prep["methods"]
    out_dir: Path = prep["out_dir"]
    out_dir.mkdir(parents=True, exist_ok=True)
    d = to_dict(cfg)
    rows = [r for bench_rows in data.values() for r in bench_rows]
    n_prompts = len(rows)
    log.info("eval: %d prompts over %d benchmarks x k=%d samples x %d method(s) %s; model %s; out %s",
             n_prompts, len(data), ecfg.k, len(methods), methods, prep["model_path"], out_dir)
    (out_dir / "config.json").write_text(json.dumps({**d, "eval": dataclasses.asdict(ecfg),
                                                     "methods": {m: dataclasses.asdict(mc) for m, mc in prep["mcfgs"].items()}},
                                                    indent=2, default=str))

    summaries: dict[str, dict] = {}
    diag: dict[str, dict] = {}
    timing: dict[str, dict[str, float]] = {}
    t0 = time.perf_counter()
    with build_stack(cfg, prep["model_path"], learners=False, rollout=False, default_num_cpus=2) as stack:
        pool = stack.pool
        pool_s = time.perf_counter() - t0
        log.info("reward pool up in %.1fs (judge %s)", pool_s, cfg.reward.judge)
        for m in methods:
            tm = {"startup_s": 0.0, "generate_s": 0.0, "score_s": 0.0, "model_tokens": 0.0}
            t0 = time.perf_counter()
            group = stack.replace_rollout(method=prep["mcfgs"][m])
            tm["startup_s"] = time.perf_counter() - t0
            log.info("[%s] rollout workers up in %.1fs", m, tm["startup_s"])
            rollouts = []
            bar = None
            if cfg.tracking.progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=n_prompts, desc=f"eval {m}", unit="prompt", dynamic_ncols=True)
            try:
                step = ecfg.chunk_prompts
                for lo in range(0, n_prompts, step):
                    chunk = rows[lo:lo + step]
                    t1 = time.perf_counter()
                    ros = group.generate(chunk, list(range(lo, lo + len(chunk))), seed=cfg.trainer.seed + lo)
                    t2 = time.perf_counter()
                    score(pool, ros)
                    t3 = time.perf_counter()
                    tm["generate_s"] += t2 - t1
                    tm["score_s"] += t3 - t2
                    tm["model_tokens"] += sum(r.n_model_tokens for r in ros)
                    rollouts += ros
                    if bar is not None:
                        bar.update(len(chunk))
                        bar.set_postfix_str(f"{chunk[-1].source} {tm['model_tokens'] / max(tm['generate_s'], 1e-9):.0f} tok/s")
                    else:
                        log.info("[%s] %d/%d prompts", m, min(lo + step, n_prompts), n_prompts)
            finally:
                if bar is not None:
                    bar.close()
                stack.rollout = None
                group.close()
            records = build_records(rollouts, ecfg.gated_policy)
            summaries[m] = summarize(records, ecfg.k)
            diag[m] = diagnostics(rollouts)
            timing[m] = tm
            _jsonl(out_dir / f"records_{m}.jsonl", records)
            if ecfg.save_samples:
                _jsonl(out_dir / f"samples_{m}.jsonl", (sample_row(r, rec, m) for r, rec in zip(rollouts, records)))
            log.info("[%s] %d samples in %.1fs generate + %.1fs score; %s", m, len(rollouts), tm["generate_s"],
                     tm["score_s"], _headline_line(summaries[m]))
        pool_stats = dict(pool.stats)

    wall = time.perf_counter() - t_start
    meta = {
        "model": cfg.model.name, "model_path": prep["model_path"], "methods": methods,
        "suites": list(ecfg.suites), "limit_per_benchmark": ecfg.limit, "subsample_seed": ecfg.seed, "k": ecfg.k,
        "temperature": cfg.rollout.temperature, "top_p": cfg.rollout.top_p,
        "max_new_tokens": cfg.rollout.max_new_tokens, "max_model_len": cfg.rollout.max_model_len,
        "judge": cfg.reward.judge, "judge_by_type": {t: s.get("name") for t, s in cfg.reward.judge_by_type.items()},
        "gated_policy": ecfg.gated_policy, "n_prompts": n_prompts, "n_skipped_long": len(prep["skipped"]),
        "wall_s": round(wall, 1),
    }
    paths = write_report(None, out_dir, meta, summaries=summaries, plot=ecfg.plot)
    with open(paths["md"], "a", encoding="utf-8") as fh:
        fh.write("\n" + diagnostics_markdown(diag, prep["skipped"], timing))
    payload = json.loads(paths["json"].read_text())
    payload["diagnostics"] = diag
    payload["timing"] = timing
    payload["skipped"] = list(prep["skipped"])
    payload["reward_pool_stats"] = pool_stats
    paths["json"].write_text(json.dumps(payload, indent=2, default=str) + "\n")
    wandb_dir = _log_wandb(cfg, ecfg, d, summaries, out_dir, meta)
    return {"out_dir": str(out_dir), "paths": {k: str(v) for k, v in paths.items()}, "summaries": summaries,
            "diagnostics": diag, "timing": timing, "wall_s": wall, "wandb_dir": wandb_dir}


def _headline_line(summary: Mapping) -> str:
    from ascl_ray.eval.metrics import HEADLINE

    parts = []
    for t, blk in summary.get("by_prompt_type", {}).items():
        est = blk["metrics"].get(HEADLINE[t])
        if est:
            parts.append(f"{t} {HEADLINE[t]}={100 * est['value']:.1f}%")
        cons = blk["metrics"].get("consultation_rate")
        if cons and t != "math":
            parts.append(f"{t} consult={100 * cons['value']:.1f}%")
    return ", ".join(parts)


def _help() -> str:
    return ((__doc__ or "").split("What runs")[0].strip() + "\n\neval keys (conf/eval.yaml): "
            + ", ".join(f.name for f in dataclasses.fields(EvalCfg))
            + "\n`ascl-ray eval --cfg [overrides]` prints the composed eval config and exits.")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``ascl-ray eval``. Exit 0 ok, 2 bad input (one line on stderr), 1 run failure."""
    from ascl_ray.config import ConfigError

    argv = list(sys.argv[1:] if argv is None else argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if any(a in ("-h", "--help", "help") for a in argv):
        print(_help())
        return 0
    t_start = time.perf_counter()
    show_cfg = "--cfg" in argv
    argv = [a for a in argv if a != "--cfg"]
    try:
        if show_cfg:
            cfg, ecfg = compose_eval(argv)
            from omegaconf import OmegaConf

            from ascl_ray.config import to_dict

            print(OmegaConf.to_yaml({**to_dict(cfg), "eval": dataclasses.asdict(ecfg)}))
            return 0
        prep = prepare(argv)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    try:
        res = run(prep, t_start=t_start)
    except Exception:  # noqa: BLE001 - full traceback in the log, exit 1 (not a bad-input error)
        log.exception("eval failed")
        return 1
    print(f"eval done in {res['wall_s']:.0f}s: {res['paths']['md']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
