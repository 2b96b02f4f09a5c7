"""``ascl-ray sft``: supervised fine-tuning on a JSONL of demonstrations through the DeepSpeed
ZeRO-3 learner group (the same actors RL uses), then a safetensors HF checkpoint.

    ascl-ray sft [hydra overrides] --data FILE [--epochs E] [--out DIR] [--batch-size B] [--steps N]
                 [--train-context spec|none] [--eval-lines N] [--seed S]

Two line formats (one JSON object per line; any other keys, e.g. the PromptRow fields, are kept
for bookkeeping and ignored by training):

1. Token form (what ``ascl-ray cada-chains`` writes; token-in/token-out, nothing re-tokenized):
   ``prompt_ids`` [int], ``response_ids`` [int], ``loss_mask`` [0|1] (one per response id; 1 on model
   tokens, 0 on tool/template tokens). CADA lines also carry ``prompt_ids_spec`` (codes + cases in
   the system prompt, as sampled) and ``prompt_ids_plain`` (no spec); ``--train-context spec|none``
   picks one of them instead of ``prompt_ids``.
2. Segment form (ASCL tool-format demonstrations, hand-written data): ``text`` (the user request)
   or ``prompt_ids``; optional ``system`` (string, or null for no system message; absent: the
   configured method's system prompt); ``segments``: [{"role": "model"|"tool", "text": ...}, ...].
   Model segments are trained (mask 1), tool segments are masked (mask 0); each segment is
   tokenized on its own (``chat.encode_segment``), as rollout does. An end-of-turn token is
   appended after a final model segment unless ``"eos": false``.

The loss is the masked token mean of cross-entropy over all rows of an optimizer step (one step
per batch of ``--batch-size`` rows). A bad line fails before anything heavy starts, with
``FILE:LINE: field 'NAME': what is wrong``.

Writes ``OUT/final`` (HF folder, ``from_pretrained`` loads it), ``OUT/sft_log.jsonl`` (one line per
step: loss, grad_norm, tokens, lr) and ``OUT/summary.json``. To continue with RL from it:
``ascl-ray train model.path=OUT/final model.build_tiny=false``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

log = logging.getLogger("ascl_ray.sft")

TRAIN_CONTEXTS = ("spec", "none")
_CONTEXT_KEY = {"spec": "prompt_ids_spec", "none": "prompt_ids_plain"}
MODEL_ROLES = ("model",)
TOOL_ROLES = ("tool",)


@dataclass
class SFTLine:
    """One training row: token ids and a per-token train mask (1: trained as a target)."""

    ids: list[int]
    mask: list[int]
    lineno: int
    prompt_type: Optional[str] = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_trained(self) -> int:
        return int(sum(self.mask[1:]))

    def pair(self) -> tuple[list[int], list[int]]:
        return self.ids, self.mask


class SFTDataError(ValueError):
    """A line of an SFT JSONL is malformed; the message starts with ``FILE:LINE``."""


def _ids_field(obj: dict, key: str, where: str, vocab: int, allow_empty: bool = False) -> list[int]:
    v = obj[key]
    if not isinstance(v, list) or (not v and not allow_empty):
        raise SFTDataError(f"{where}: field '{key}': expected a non-empty list of token ids, got "
                           f"{type(v).__name__ if not isinstance(v, list) else 'an empty list'}")
    for i, t in enumerate(v):
        if isinstance(t, bool) or not isinstance(t, int):
            raise SFTDataError(f"{where}: field '{key}[{i}]': expected an int token id, got {t!r}")
        if not 0 <= t < vocab:
            raise SFTDataError(f"{where}: field '{key}[{i}]': token id {t} outside the vocabulary (size {vocab})")
    return list(v)


def parse_line(obj: Any, where: str, tok: Any, default_system: Optional[str],
               train_context: Optional[str] = None) -> tuple[list[int], list[int]]:
    """One decoded JSON line -> (ids, per-token mask). Raises SFTDataError naming ``where`` + field."""
    from ascl_ray.rollout.chat import encode_segment, prompt_ids

    vocab = len(tok)
    if not isinstance(obj, dict):
        raise SFTDataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if train_context is not None and train_context not in TRAIN_CONTEXTS:
        raise SFTDataError(f"{where}: train_context={train_context!r}, expected one of {TRAIN_CONTEXTS}")
    pkey = _CONTEXT_KEY[train_context] if train_context else "prompt_ids"
    if "segments" in obj:
        segs = obj["segments"]
        if not isinstance(segs, list) or not segs:
            raise SFTDataError(f"{where}: field 'segments': expected a non-empty list of "
                               "{\"role\": \"model\"|\"tool\", \"text\": ...} objects")
        if pkey in obj:
            ids = _ids_field(obj, pkey, where, vocab)
        elif train_context and "prompt_ids" in obj:
            raise SFTDataError(f"{where}: field '{pkey}' is missing (needed by --train-context {train_context})")
        elif "prompt_ids" in obj:
            ids = _ids_field(obj, "prompt_ids", where, vocab)
        else:
            text = obj.get("text")
            if not isinstance(text, str) or not text.strip():
                raise SFTDataError(f"{where}: field 'text': a segment line needs the user request "
                                   "('text', a non-empty string) or 'prompt_ids'")
            system = obj["system"] if "system" in obj else default_system
            if system is not None and not isinstance(system, str):
                raise SFTDataError(f"{where}: field 'system': expected a string or null, got {type(system).__name__}")
            ids = prompt_ids(tok, text, system)
        mask = [0] * len(ids)
        last_role = None
        for k, seg in enumerate(segs):
            if not isinstance(seg, dict):
                raise SFTDataError(f"{where}: field 'segments[{k}]': expected an object, got {type(seg).__name__}")
            role, text = seg.get("role"), seg.get("text")
            if role not in MODEL_ROLES + TOOL_ROLES:
                raise SFTDataError(f"{where}: field 'segments[{k}].role': expected 'model' or 'tool', got {role!r}")
            if not isinstance(text, str) or not text:
                raise SFTDataError(f"{where}: field 'segments[{k}].text': expected a non-empty string")
            seg_ids = encode_segment(tok, text)
            ids += seg_ids
            mask += [1 if role in MODEL_ROLES else 0] * len(seg_ids)
            last_role = role
        eos = obj.get("eos", True)
        if not isinstance(eos, bool):
            raise SFTDataError(f"{where}: field 'eos': expected true or false, got {eos!r}")
        if eos and last_role in MODEL_ROLES and tok.eos_token_id is not None and ids[-1] != tok.eos_token_id:
            ids.append(int(tok.eos_token_id))
            mask.append(1)
    elif "response_ids" in obj:
        if pkey not in obj:
            hint = f" (needed by --train-context {train_context})" if train_context else ""
            raise SFTDataError(f"{where}: field '{pkey}' is missing{hint}")
        p_ids = _ids_field(obj, pkey, where, vocab)
        r_ids = _ids_field(obj, "response_ids", where, vocab)
        if "loss_mask" not in obj:
            raise SFTDataError(f"{where}: field 'loss_mask' is missing")
        lm = obj["loss_mask"]
        if not isinstance(lm, list) or len(lm) != len(r_ids):
            n = len(lm) if isinstance(lm, list) else type(lm).__name__
            raise SFTDataError(f"{where}: field 'loss_mask': expected {len(r_ids)} values (one per response id), got {n}")
        for i, v in enumerate(lm):
            if isinstance(v, bool) or v not in (0, 1):
                raise SFTDataError(f"{where}: field 'loss_mask[{i}]': expected 0 or 1, got {v!r}")
        ids, mask = p_ids + r_ids, [0] * len(p_ids) + [int(v) for v in lm]
    else:
        raise SFTDataError(f"{where}: field 'response_ids' (token form) or 'segments' (segment form) is required")
    if sum(mask[1:]) == 0:
        raise SFTDataError(f"{where}: field '{'segments' if 'segments' in obj else 'loss_mask'}': no trained "
                           "(model) token: every token is masked")
    return ids, mask


def load_sft_jsonl(path: str, tok: Any, default_system: Optional[str] = None, *,
                   train_context: Optional[str] = None, max_len: Optional[int] = None) -> list[SFTLine]:
    """Read and validate every line (blank lines skipped). Errors name ``path:line`` and the field."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"--data: file not found: {path}")
    out: list[SFTLine] = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise SFTDataError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
            ids, mask = parse_line(obj, where, tok, default_system, train_context)
            if max_len is not None and len(ids) > max_len:
                raise SFTDataError(f"{where}: {len(ids)} tokens exceed the model's {max_len} positions")
            pt = obj.get("prompt_type")
            out.append(SFTLine(ids, mask, lineno, pt if isinstance(pt, str) else None,
                               {k: obj[k] for k in ("prompt_id", "source") if k in obj}))
    if not out:
        raise SFTDataError(f"{path}: no training lines")
    return out


def segment_line(user_text: str, segments: list[tuple[str, str]], *, system: Optional[str] = None,
                 **extra: Any) -> dict:
    """A segment-form line: ``segments`` as (role, text) pairs, role 'model' or 'tool'."""
    return {"text": user_text, "system": system, "segments": [{"role": r, "text": t} for r, t in segments], **extra}


def demo_line(demo: Any, ctx: Any) -> dict:
    """An ASCL tool-format demonstration (``synthetic.Demo``) as a segment-form line, rendered with
    the method context ``ctx`` exactly like ``learner.sft.build_example`` (call trained, tool turn masked)."""
    segs: list[tuple[str, str]] = []
    if demo.tool_call is not None and ctx.protocol is not None:
        call = ctx.protocol.format_call(demo.tool_call)
        turn = ctx.tool_turn_text(call, n_prev_calls=0, policy=getattr(demo, "policy", None))[0]
        segs += [("model", call), ("tool", turn)]   # the verdict a gray-zone demo's answer follows
    segs.append(("model", demo.answer))
    r = demo.row
    return segment_line(r.text, segs, system=ctx.system_text, prompt_id=r.prompt_id, prompt_type=r.prompt_type)


# ---------------------------------------------------------------------------------------------------- run
def _batches(n: int, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """``steps`` batches of ``batch_size`` row indices: epoch-shuffled passes over the rows, a pass
    continuing into the next one when the batch size does not divide the data."""
    rng = random.Random(seed)
    stream: list[int] = []
    out = []
    for _ in range(steps):
        while len(stream) < batch_size:
            perm = list(range(n))
            rng.shuffle(perm)
            stream += perm
        out.append(stream[:batch_size])
        stream = stream[batch_size:]
    return out


def _eval_loss(learners: Any, rows: list[tuple[list[int], list[int]]]) -> tuple[float, list[float]]:
    per = learners.sft_eval(rows)
    nll, n = sum(a for a, _ in per), sum(b for _, b in per)
    return nll / max(n, 1.0), [a / max(b, 1.0) for a, b in per]


def run_sft(cfg: Any, data_path: str, out_dir: Optional[str] = None, *, epochs: int = 1,
            batch_size: int = 16, steps: Optional[int] = None, train_context: Optional[str] = None,
            eval_lines: int = 64, seed: Optional[int] = None) -> dict[str, Any]:
    """SFT on ``data_path`` with the learner group of ``cfg`` (TrainConfig). Returns a summary:
    ``losses`` (per step, before each step's update), ``eval_before`` / ``eval_after`` (token-mean loss
    over the first ``eval_lines`` lines, and per line in ``eval_lines_before/after``), ``checkpoint``,
    ``steps``, ``lines``, ``seconds``."""
    import dataclasses

    from transformers import AutoConfig, AutoTokenizer

    from ascl_ray.config import ConfigError
    from ascl_ray.rollout.method import build_context
    from ascl_ray.runtime import build_stack, ensure_model

    t0 = time.perf_counter()
    if epochs < 1:
        raise ConfigError(f"--epochs: must be >= 1, got {epochs}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size: must be >= 1, got {batch_size}")
    if steps is not None and steps < 1:
        raise ConfigError(f"--steps: must be >= 1, got {steps}")
    seed = cfg.trainer.seed if seed is None else seed
    out = Path(out_dir or os.path.join(cfg.trainer.out_dir, "sft"))
    model_path = ensure_model(cfg)
    tok = AutoTokenizer.from_pretrained(model_path)
    max_len = getattr(AutoConfig.from_pretrained(model_path), "max_position_embeddings", None)
    mcfg = cfg.method
    if train_context is not None:   # segment lines without 'system' follow the chosen context too
        mcfg = dataclasses.replace(mcfg, context_at_train=train_context == "spec")
    system = build_context(mcfg, tokenizer=tok, train=True).system_text
    lines = load_sft_jsonl(data_path, tok, system, train_context=train_context, max_len=max_len)
    rows = [ln.pair() for ln in lines]

    W = int(cfg.learner.num_actors)
    bs = max(W, min(batch_size, len(rows)))
    bs -= bs % W                                    # every rank gets the same number of rows
    per_rank = bs // W
    micro = min(cfg.learner.micro_batch_size, per_rank)
    grad_accum = math.ceil(per_rank / micro)
    n_steps = steps if steps is not None else epochs * math.ceil(len(rows) / bs)
    batches = _batches(len(rows), bs, n_steps, seed)
    log.info("sft: %d lines (%d trained tokens) from %s; %d steps of %d rows (%d ranks x %d micro-batches)",
             len(rows), sum(ln.n_trained for ln in lines), data_path, n_steps, bs, W, grad_accum)

    acfg = dataclasses.replace(cfg.algorithm, kl_coef=0.0)     # SFT needs no reference model
    out.mkdir(parents=True, exist_ok=True)
    history: list[dict] = []
    with build_stack(cfg, model_path, rollout=False, reward=False, algorithm=acfg, grad_accum=grad_accum) as stack:
        learners = stack.learners
        ev_rows = rows[:eval_lines] if eval_lines > 0 else []
        ev_before, per_before = _eval_loss(learners, ev_rows) if ev_rows else (float("nan"), [])
        with open(out / "sft_log.jsonl", "w") as logf:
            for step, idx in enumerate(batches):
                ts = time.perf_counter()
                m = learners.sft_update([rows[i] for i in idx])
                m = {"step": step, **m, "seconds": time.perf_counter() - ts}
                history.append(m)
                logf.write(json.dumps(m) + "\n")
                logf.flush()
                log.info("sft step %d/%d  loss %.4f  grad_norm %.3f  tokens %d  (%.1fs)", step + 1, n_steps,
                         m["loss"], m["grad_norm"], m["n_tokens"], m["seconds"])
        ev_after, per_after = _eval_loss(learners, ev_rows) if ev_rows else (float("nan"), [])
        ckpt = learners.save_hf(str(out / "final"))
    summary = {"data": data_path, "lines": len(rows), "steps": n_steps, "batch_size": bs, "grad_accum": grad_accum,
               "train_context": train_context, "losses": [h["loss"] for h in history],
               "eval_before": ev_before, "eval_after": ev_after, "checkpoint": ckpt, "model": model_path,
               "seconds": time.perf_counter() - t0}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    summary["eval_lines_before"], summary["eval_lines_after"] = per_before, per_after
    summary["history"] = history
    return summary


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="ascl-ray sft", description=__doc__.split("\n\n")[0],
                                epilog="Other arguments are Hydra overrides, e.g. learner.lr=5e-4 model.path=DIR.",
                                allow_abbrev=False)
    p.add_argument("--data", required=True, help="JSONL of demonstrations (token or segment form)")
    p.add_argument("--epochs", type=int, default=1, help="passes over the data (default 1)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (overrides --epochs)")
    p.add_argument("--batch-size", type=int, default=16, help="rows per optimizer step, all ranks (default 16)")
    p.add_argument("--out", default=None, help="output folder (default: trainer.out_dir/sft)")
    p.add_argument("--train-context", choices=TRAIN_CONTEXTS, default=None,
                   help="[ours] token-form lines: train on prompt_ids_spec (spec) or prompt_ids_plain (none) "
                        "instead of prompt_ids")
    p.add_argument("--eval-lines", type=int, default=64, help="lines scored before/after training (0: off)")
    p.add_argument("--seed", type=int, default=None, help="batch order seed (default trainer.seed)")
    args, overrides = p.parse_known_args(argv)
    bad = [o for o in overrides if o.startswith("-")]
    if bad:
        p.error(f"unknown option(s) {bad}")
    from ascl_ray.cli import compose

    cfg = compose(overrides)
    s = run_sft(cfg, args.data, args.out, epochs=args.epochs, batch_size=args.batch_size, steps=args.steps,
                train_context=args.train_context, eval_lines=args.eval_lines, seed=args.seed)
    print("sft loss per step: " + " ".join(f"{x:.4f}" for x in s["losses"]))
    print(f"loss on the first {min(args.eval_lines, s['lines'])} lines: {s['eval_before']:.4f} -> {s['eval_after']:.4f}")
    print(f"checkpoint: {s['checkpoint']}  ({s['steps']} steps in {s['seconds']:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
