"""Multi-turn episodes with the rule-retrieval tool, batched across all sequences.

All sequences start in one batch. A sequence that stops at the protocol's closing tag gets the
tool run and the tool turn appended (loss mask 0, log-prob 0), and its continuation joins the
running batch at once (continuous batching, ``engine.generate_continuous``); engines without it
run turn by turn, every tool-calling sequence continuing together in the next batched call. The
tool turn never serialises the batch. Token-in, token-out: the engine's token ids are kept; only the tool turn
(environment text) is tokenized. No Ray here: the rollout worker actor wraps this.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Optional

from ascl_ray.batch import PromptRow, Rollout
from ascl_ray.rollout.chat import encode_segment, prompt_ids
from ascl_ray.rollout.engine import GenParams


@dataclass
class SamplingCfg:
    max_new_tokens: int            # model-generated tokens per episode, all segments together
    max_model_len: int             # prompt + response (tool turns included) must fit
    min_new_tokens: int = 0        # no end of sequence before this many response tokens (benchmarks)
    temperature: float = 1.0
    top_p: float = 1.0
    seed: Optional[int] = None     # per-request seeds; None: the engine's own seeded generator
    continuous: bool = True        # tool continuations join the running batch (engines that support it)
    # [ours, verl's response_length convention] the response budget also pays for tool turns: rules a
    # call brings in eat the tokens the answer has left (max_new_tokens then bounds the whole response)
    budget_includes_tool: bool = False
    env_seed: int = 0              # seeds the environment's per-episode draws (operator policy)


def run_episodes(engine: Any, ctx: Any, tok: Any, rows: list[PromptRow], group_ids: list[int],
                 scfg: SamplingCfg) -> list[Rollout]:
    """One episode per (row, group_id) pair (repeat rows for G samples). Each episode's operator policy
    is drawn by the environment (``ctx.draw_policy``) from ``scfg.env_seed`` and the episode's index."""
    if len(rows) != len(group_ids):
        raise ValueError(f"run_episodes: {len(rows)} rows but {len(group_ids)} group_ids")
    eps = []
    for k, (row, gid) in enumerate(zip(rows, group_ids)):
        p_ids = prompt_ids(tok, row.text, ctx.system_text)
        if len(p_ids) >= scfg.max_model_len:
            raise ValueError(f"prompt {row.prompt_id!r}: {len(p_ids)} tokens do not fit "
                             f"rollout.max_model_len={scfg.max_model_len}")
        policy = ctx.draw_policy(random.Random(scfg.env_seed * 1_000_003 + k)) if hasattr(ctx, "draw_policy") else {}
        eps.append(Rollout(group_id=int(gid), prompt=row, prompt_ids=p_ids,
                           response_ids=[], loss_mask=[], rollout_logprobs=[], policy=policy))
    segments: list[list[str]] = [[] for _ in eps]   # decoded model text per segment
    tool_texts: list[list[str]] = [[] for _ in eps]
    ended_with_call = [False] * len(eps)
    turns = [0] * len(eps)

    def spent(ep: Rollout, tool_turn: int = 0) -> int:
        """Budget used so far, plus a tool turn about to be appended when tool turns count."""
        if scfg.budget_includes_tool:
            return len(ep.response_ids) + tool_turn
        return ep.n_model_tokens

    def params_for(i: int) -> GenParams:
        ep = eps[i]
        budget = min(scfg.max_new_tokens - spent(ep),
                     scfg.max_model_len - len(ep.prompt_ids) - len(ep.response_ids))
        seed = None if scfg.seed is None else scfg.seed * 1_000_003 + i * 101 + turns[i]
        return GenParams(max_tokens=budget, temperature=scfg.temperature, top_p=scfg.top_p,
                         stop=list(ctx.stop_strings), seed=seed,
                         min_tokens=max(0, min(scfg.min_new_tokens - spent(ep), budget)))

    def on_segment(i: int, seg: Any) -> Optional[tuple[list[int], GenParams]]:
        """Record a finished segment; return the continuation if the tool turn was appended."""
        ep = eps[i]
        ep.response_ids += seg.token_ids
        ep.loss_mask += [1] * len(seg.token_ids)
        ep.rollout_logprobs += [float(x) for x in seg.logprobs]
        segments[i].append(seg.text)
        stopped_at_tag = (seg.finish_reason == "stop" and isinstance(seg.stop_reason, str)
                          and seg.stop_reason in ctx.stop_strings)
        ended_with_call[i] = stopped_at_tag
        if seg.finish_reason == "length":
            ep.truncated = True
            return None
        if not stopped_at_tag:
            return None
        turn_text, info = ctx.tool_turn_text(seg.text, n_prev_calls=ep.n_calls, policy=ep.policy)
        ep.n_calls += 1
        if info.get("valid"):
            ep.consulted = ep.consulted or info.get("tool") in (None, ctx.consult_tool)  # another tool's call is no consultation
            if info.get("category"):
                ep.categories.append(str(info["category"]))
        else:
            ep.malformed_call = ep.malformed_call or bool(info.get("malformed"))
        turn_ids = encode_segment(tok, turn_text)
        room = min(scfg.max_new_tokens - spent(ep, len(turn_ids)),
                   scfg.max_model_len - len(ep.prompt_ids) - len(ep.response_ids) - len(turn_ids))
        if room <= 0:
            ep.truncated = True
            return None
        ep.response_ids += turn_ids
        ep.loss_mask += [0] * len(turn_ids)
        ep.rollout_logprobs += [0.0] * len(turn_ids)
        tool_texts[i].append(turn_text)
        turns[i] += 1
        return ep.prompt_ids + ep.response_ids, params_for(i)

    first = [params_for(i) for i in range(len(eps))]
    if scfg.continuous and hasattr(engine, "generate_continuous"):
        engine.generate_continuous([ep.prompt_ids for ep in eps], first, on_segment)
    else:  # turn by turn: every sequence that called the tool continues in the next batched call
        todo = [(i, eps[i].prompt_ids, first[i]) for i in range(len(eps))]
        while todo:
            outs = engine.generate([t[1] for t in todo], [t[2] for t in todo])
            todo = [(i, *nxt) for (i, _, _), seg in zip(todo, outs) if (nxt := on_segment(i, seg)) is not None]
    for i, ep in enumerate(eps):
        last = "" if ended_with_call[i] or not segments[i] else segments[i][-1]
        ep.final_text = strip_end_tokens(last, tok)
        parts = []
        for k, s in enumerate(segments[i]):
            parts.append(s)
            if k < len(tool_texts[i]):
                parts.append(tool_texts[i][k])
        ep.full_text = "".join(parts)
        ep.check()
    return eps


def strip_end_tokens(text: str, tok: Any) -> str:
    for t in (getattr(tok, "eos_token", None), "<|im_end|>", "<|endoftext|>"):
        if t and text.endswith(t):
            text = text[: -len(t)]
    return text.strip()
