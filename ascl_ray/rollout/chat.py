"""The one tokenizer / chat-template path, shared by SFT, rollout and eval.

Token-in, token-out: the prompt is rendered once with the model's chat template and tokenized;
after that, model tokens are kept exactly as generated, and only environment text (tool turns)
is ever tokenized, segment by segment, with ``encode_segment``.
"""

from __future__ import annotations

from typing import Any, Optional


def render_prompt(tokenizer: Any, user_text: str, system_text: Optional[str] = None) -> str:
    messages = []
    if system_text:
        messages.append({"role": "system", "content": system_text})
    messages.append({"role": "user", "content": user_text})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def prompt_ids(tokenizer: Any, user_text: str, system_text: Optional[str] = None) -> list[int]:
    return encode_segment(tokenizer, render_prompt(tokenizer, user_text, system_text))


def encode_segment(tokenizer: Any, text: str) -> list[int]:
    """Tokenize environment text (a rendered prompt or a tool turn); never model output."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def eos_ids(tokenizer: Any) -> list[int]:
    """Token ids that end an assistant turn (eos + chat end token where they differ)."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    for tok in ("<|im_end|>", "<|eot_id|>", "<|endoftext|>"):
        tid = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid >= 0:
            ids.add(tid)
    return sorted(ids)
