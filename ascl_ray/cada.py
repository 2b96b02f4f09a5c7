"""CADA self-generated reasoning chains (methods.md section 4): "SFT w/ CR" data.

    ascl-ray cada-chains [hydra overrides] [--out FILE] [--samples N] [--limit N]
                         [--train-context spec|none] [--min-reward R] [--seed S]

1. The policy is sampled through the real rollout workers (vLLM) with the method's context:
   ``method=cada`` puts the safety codes + cases in the system prompt (it is the default here when
   no ``method=`` override is given; the spec is in context while sampling whatever
   ``method.context_at_train`` says).
2. Every sample is scored by the real reward pool (judges + math verifier, format gate).
3. Chains the judge accepts (reward >= ``--min-reward``, default 1; valid score; not truncated)
   are written as JSONL SFT data for ``ascl-ray sft``.

Each line: the PromptRow fields (``prompt_id, text, prompt_type, reference, math_kind, category,
source``), ``response`` (the engine's text of ``response_ids``) and ``final_text`` (what the judge
scored), the engine's exact ``response_ids`` + ``loss_mask`` (token-in/token-out: SFT trains on the
ids the engine produced), ``prompt_ids_spec`` (the prompt as sampled, spec in context),
``prompt_ids_plain`` (the same request without the spec: the configured method with
``context_at_train=false``), ``prompt_ids`` (the one chosen by ``--train-context``),
``train_context``, ``reward``, ``group_id``, ``sample``, ``consulted``, ``n_calls``.

[ours] ``--train-context none`` (default): "SFT w/ CR" trains on the chains WITHOUT the spec in
context (the reasoning over codes is distilled into the policy, as in deliberative alignment);
``spec`` keeps the codes + cases in the training prompt. ``ascl-ray sft --train-context`` can
switch a written file either way, since both prompt forms are stored.

A ``FILE.meta.json`` next to the output records the counts, the two system prompts and the model.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from typing import Any, Optional

from ascl_ray.batch import PromptRow, Rollout, prompt_types

log = logging.getLogger("ascl_ray.cada")

TRAIN_CONTEXTS = ("spec", "none")


def stratified_head(rows: list[PromptRow], limit: Optional[int]) -> list[PromptRow]:
    """The first ``limit`` rows taking the prompt types in turn (so a small limit covers every type)."""
    if limit is None or limit >= len(rows):
        return list(rows)
    kinds = prompt_types()
    by_type = {t: [r for r in rows if r.prompt_type == t] for t in kinds}
    out: list[PromptRow] = []
    k = 0
    while len(out) < limit:
        for t in kinds:
            if k < len(by_type[t]) and len(out) < limit:
                out.append(by_type[t][k])
        k += 1
    return out


def accepted(r: Rollout, min_reward: float) -> bool:
    """Judge-accepted: reward at least ``min_reward``, a valid score, and a complete (not truncated) chain."""
    return (r.reward is not None and r.reward >= min_reward and bool(r.reward_info.get("valid", True))
            and not r.truncated)


def chain_record(r: Rollout, sample: int, plain_ids: list[int], train_context: str) -> dict:
    row = r.prompt
    return {
        "prompt_id": row.prompt_id, "text": row.text, "prompt_type": row.prompt_type, "reference": row.reference,
        "math_kind": row.math_kind, "category": row.category, "source": row.source,
        "response": r.full_text, "final_text": r.final_text,
        "prompt_ids": list(r.prompt_ids) if train_context == "spec" else list(plain_ids),
        "response_ids": list(r.response_ids), "loss_mask": list(r.loss_mask),
        "prompt_ids_spec": list(r.prompt_ids), "prompt_ids_plain": list(plain_ids),
        "train_context": train_context, "reward": float(r.reward), "group_id": r.group_id, "sample": sample,
        "consulted": r.consulted, "n_calls": r.n_calls,
        "expected": r.expected_verdict,   # gray_zone: the verdict the episode's operator policy set
    }


class Counts:
    def __init__(self) -> None:
        self.by_type: dict[str, dict[str, int]] = {}
        self.prompts_ok: dict[str, set] = {}

    def add(self, r: Rollout, ok: bool) -> None:
        c = self.by_type.setdefault(r.prompt.prompt_type, {"sampled": 0, "accepted": 0, "truncated": 0,
                                                            "invalid": 0, "prompts": 0})
        c["sampled"] += 1
        c["accepted"] += int(ok)
        c["truncated"] += int(r.truncated)
        c["invalid"] += int(not r.reward_info.get("valid", True))
        seen = self.prompts_ok.setdefault(r.prompt.prompt_type, set())
        if ok:
            seen.add(r.prompt.prompt_id)

    def summary(self, n_prompts_by_type: dict[str, int]) -> dict[str, Any]:
        by_type = {}
        for t in prompt_types():
            if t not in self.by_type:
                continue
            c = dict(self.by_type[t])
            c["prompts"] = n_prompts_by_type.get(t, 0)
            c["prompts_with_accepted"] = len(self.prompts_ok.get(t, ()))
            c["acceptance_rate"] = c["accepted"] / c["sampled"] if c["sampled"] else 0.0
            by_type[t] = c
        n = sum(c["sampled"] for c in by_type.values())
        k = sum(c["accepted"] for c in by_type.values())
        return {"sampled": n, "accepted": k, "acceptance_rate": k / n if n else 0.0, "by_type": by_type}


def generate_chains(cfg: Any, out_path: str, *, samples: Optional[int] = None, limit: Optional[int] = None,
                    train_context: str = "none", min_reward: float = 1.0, seed: Optional[int] = None,
                    rows: Optional[list[PromptRow]] = None, prompts_per_call: int = 32,
                    rejected_path: Optional[str] = None) -> dict[str, Any]:
    """Sample ``samples`` chains per training prompt (default ``rollout.n_samples``) with the method's
    spec in context, score them with the reward pool, write the accepted ones to ``out_path``.
    Returns the counts: ``sampled``, ``accepted``, ``acceptance_rate``, ``by_type`` (per prompt type:
    sampled, accepted, acceptance_rate, truncated, invalid, prompts, prompts_with_accepted), plus
    ``out_path``, ``meta_path``, ``seconds``. ``rejected_path``: also write the other samples there
    (same line format, for inspection or other baselines)."""
    import dataclasses

    from transformers import AutoTokenizer

    from ascl_ray.config import ConfigError, to_dict
    from ascl_ray.rollout.chat import prompt_ids
    from ascl_ray.rollout.method import build_context
    from ascl_ray.runtime import build_stack, ensure_model, load_prompts, score

    t0 = time.perf_counter()
    if train_context not in TRAIN_CONTEXTS:
        raise ConfigError(f"--train-context: expected one of {TRAIN_CONTEXTS}, got {train_context!r}")
    if samples is not None and samples < 1:
        raise ConfigError(f"--samples: must be >= 1, got {samples}")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit: must be >= 1, got {limit}")
    d = to_dict(cfg)
    if d["method"]["name"] != "cada":
        log.warning("cada-chains with method=%s: CADA chains are sampled with method=cada", d["method"]["name"])
    seed = cfg.trainer.seed if seed is None else seed
    if rows is None:
        rows, _ = load_prompts(cfg)
    rows = stratified_head(rows, limit)
    if not rows:
        raise ValueError("cada-chains: no prompts")
    model_path = ensure_model(cfg)
    tok = AutoTokenizer.from_pretrained(model_path)
    spec_method = dataclasses.replace(cfg.method, context_at_train=True)   # the spec is in context while sampling
    plain_method = dataclasses.replace(cfg.method, context_at_train=False)
    spec_system = build_context(spec_method, tokenizer=tok).system_text
    plain_system = build_context(plain_method, tokenizer=tok).system_text
    rcfg = cfg.rollout if samples is None else dataclasses.replace(cfg.rollout, n_samples=int(samples))

    counts = Counts()
    tmp = out_path + ".tmp"
    rej = open(rejected_path, "w") if rejected_path else None
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    stack = None
    try:
        stack = build_stack(cfg, model_path, learners=False, method=spec_method, rollout_cfg=rcfg, seed=seed)
        rollout, pool = stack.rollout, stack.pool
        with open(tmp, "w") as f:
            for c0 in range(0, len(rows), prompts_per_call):
                chunk = rows[c0:c0 + prompts_per_call]
                gids = list(range(c0, c0 + len(chunk)))
                ros = rollout.generate(chunk, gids, seed=seed * 100_003 + c0)
                score(pool, ros)
                k_in_group: dict[int, int] = {}
                rendered: dict[int, tuple[list[int], list[int]]] = {}   # group id -> (spec, plain) prompt ids
                for r in ros:
                    k = k_in_group[r.group_id] = k_in_group.get(r.group_id, -1) + 1
                    if r.group_id not in rendered:
                        rendered[r.group_id] = (prompt_ids(tok, r.prompt.text, spec_system),
                                                prompt_ids(tok, r.prompt.text, plain_system))
                    spec_ids, plain_ids = rendered[r.group_id]
                    if list(r.prompt_ids) != spec_ids:   # token-in/token-out: the worker saw this exact prompt
                        raise RuntimeError(f"cada-chains: prompt {r.prompt.prompt_id!r}: the rollout prompt ids "
                                           "differ from the spec prompt rendered here")
                    ok = accepted(r, min_reward)
                    counts.add(r, ok)
                    if ok or rej is not None:
                        rec = chain_record(r, k, plain_ids, train_context)
                        if not ok:
                            rec.update(truncated=r.truncated, reward_info=r.reward_info)
                        (f if ok else rej).write(json.dumps(rec, default=str) + "\n")
                log.info("cada-chains: %d/%d prompts, %d/%d samples accepted so far", c0 + len(chunk), len(rows),
                         sum(c["accepted"] for c in counts.by_type.values()),
                         sum(c["sampled"] for c in counts.by_type.values()))
        os.replace(tmp, out_path)
    finally:
        if rej is not None:
            rej.close()
        if os.path.exists(tmp):
            os.remove(tmp)
        if stack is not None:
            stack.close()
    n_by_type = {t: sum(r.prompt_type == t for r in rows) for t in prompt_types()}
    out = counts.summary(n_by_type)
    out.update(out_path=out_path, meta_path=out_path + ".meta.json", train_context=train_context,
               min_reward=min_reward, n_samples=rcfg.n_samples, seconds=time.perf_counter() - t0)
    meta = {**out, "model": model_path, "method": d["method"], "system_spec": spec_system,
            "system_plain": plain_system, "reward": d["reward"]}
    with open(out["meta_path"], "w") as f:
        json.dump(meta, f, indent=2)
    return out


def format_counts(c: dict) -> str:
    lines = [f"{'prompt type':<18}{'prompts':>8}{'sampled':>9}{'accepted':>10}{'rate':>8}{'prompts ok':>12}"]
    for t, v in c["by_type"].items():
        lines.append(f"{t:<18}{v['prompts']:>8}{v['sampled']:>9}{v['accepted']:>10}{v['acceptance_rate']:>8.2f}"
                     f"{v['prompts_with_accepted']:>12}")
    lines.append(f"{'all':<18}{'':>8}{c['sampled']:>9}{c['accepted']:>10}{c['acceptance_rate']:>8.2f}")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="ascl-ray cada-chains", description=__doc__.split("\n\n")[0],
                                epilog="Other arguments are Hydra overrides (method=cada is the default here).",
                                allow_abbrev=False)
    p.add_argument("--out", default=None, help="output JSONL (default: trainer.out_dir/cada_chains.jsonl)")
    p.add_argument("--samples", type=int, default=None, help="samples per prompt (default rollout.n_samples)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training prompts (types in turn)")
    p.add_argument("--train-context", choices=TRAIN_CONTEXTS, default="none",
                   help="[ours] prompt_ids of each line: without the spec (none, default) or with it (spec)")
    p.add_argument("--min-reward", type=float, default=1.0, help="keep chains with at least this reward (default 1)")
    p.add_argument("--seed", type=int, default=None, help="sampling seed (default trainer.seed)")
    p.add_argument("--rejected", default=None, help="also write the rejected samples to this JSONL")
    args, overrides = p.parse_known_args(argv)
    bad = [o for o in overrides if o.startswith("-")]
    if bad:
        p.error(f"unknown option(s) {bad}")
    if not any(o.lstrip("+~").startswith("method=") for o in overrides):
        overrides = ["method=cada"] + overrides
    from ascl_ray.cli import compose

    cfg = compose(overrides)
    out_path = args.out or os.path.join(cfg.trainer.out_dir, "cada_chains.jsonl")
    c = generate_chains(cfg, out_path, samples=args.samples, limit=args.limit, train_context=args.train_context,
                        min_reward=args.min_reward, seed=args.seed, rejected_path=args.rejected)
    print(format_counts(c))
    print(f"wrote {c['accepted']} chains to {c['out_path']} (counts: {c['meta_path']}) in {c['seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
