"""Supervised fine-tuning on (prompt, [tool call, tool turn], answer) demonstrations.

Examples are built with the exact token path of rollout (chat.prompt_ids + segments tokenized
one by one), and the loss covers model tokens only: the tool turn is masked as in RL.
Pure torch (no DeepSpeed): used by the tiny-model warm start and by the learner actor's SFT step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class SFTExample:
    ids: list[int]
    mask: list[int]  # 1 where the token is trained (model tokens of the response)


def build_example(tok: Any, ctx: Any, user_text: str, tool_args: dict | None, answer: str,
                  policy: dict | None = None) -> SFTExample:
    from ascl_ray.rollout.chat import encode_segment, prompt_ids

    ids = prompt_ids(tok, user_text, ctx.system_text)
    mask = [0] * len(ids)
    if tool_args is not None and ctx.protocol is not None:
        call_ids = encode_segment(tok, ctx.protocol.format_call(tool_args))
        turn_ids = encode_segment(tok, ctx.tool_turn_text(ctx.protocol.format_call(tool_args), n_prev_calls=0,
                                                          policy=policy)[0])
        ids += call_ids + turn_ids
        mask += [1] * len(call_ids) + [0] * len(turn_ids)
    ans_ids = encode_segment(tok, answer) + [tok.eos_token_id]
    ids += ans_ids
    mask += [1] * len(ans_ids)
    return SFTExample(ids, mask)


def sft_examples(demos: list, tok: Any, ctx: Any) -> list[SFTExample]:
    return [build_example(tok, ctx, d.row.text, d.tool_call, d.answer, getattr(d, "policy", None)) for d in demos]


def pad_sft(examples: list[tuple[list[int], list[int]]], pad_id: int):
    """SFT rows (token ids, per-token train mask) -> right-padded ``input_ids``, ``attention_mask``
    [B, T] and the target mask [B, T-1] (``mask[:, 1:]``: position t predicts token t+1)."""
    import torch

    T = max(len(ids) for ids, _ in examples)
    ids_t = torch.full((len(examples), T), pad_id, dtype=torch.long)
    attn = torch.zeros((len(examples), T), dtype=torch.long)
    mask = torch.zeros((len(examples), T), dtype=torch.float32)
    for i, (ids, m) in enumerate(examples):
        if len(ids) != len(m):
            raise ValueError(f"pad_sft: row {i}: {len(ids)} ids but {len(m)} mask values")
        ids_t[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attn[i, : len(ids)] = 1
        mask[i, : len(m)] = torch.tensor(m, dtype=torch.float32)
    return ids_t, attn, mask[:, 1:]


def even_split(n: int, parts: int) -> list[list[int]]:
    """Indices 0..n-1 as ``parts`` contiguous chunks of near-equal size (differing by at most one)."""
    bounds = [round(k * n / parts) for k in range(parts + 1)]
    return [list(range(bounds[k], bounds[k + 1])) for k in range(parts)]


def sft_loss(model: Any, batch: list[SFTExample], pad_id: int):
    """Token-mean cross-entropy over masked-in target tokens."""
    import torch.nn.functional as F

    ids, attn, m = pad_sft([(e.ids, e.mask) for e in batch], pad_id)
    logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1].float()
    tgt = ids[:, 1:]
    nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), tgt.reshape(-1), reduction="none").view_as(m)
    return (nll * m).sum() / m.sum().clamp(min=1.0)
