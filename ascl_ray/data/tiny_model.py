"""Build the embedded tiny default policy: no hub, no network.

1. train a byte-level BPE tokenizer on the synthetic task's text (``tokenizers``) with a ChatML
   chat template that has system/user/assistant/tool roles (Qwen2.5-style tool turns);
2. create a small Qwen2 model (head_dim 64: vLLM's CPU attention rejects head_dim 16) with tied
   embeddings, like the small real models;
3. SFT warm start on the project's demonstrations (``synthetic.demonstrations``), loss on model
   tokens only (tool turns masked, exactly like RL), through the same chat/protocol code as rollout.

``python -m ascl_ray.data.tiny_model --out DIR`` writes a safetensors HF folder; the folder is
written to a temp dir and renamed, so a crash never leaves a half model behind.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path
from typing import Optional

from ascl_ray.tools.wire import CHATML_TOOL_TEMPLATE as CHAT_TEMPLATE  # Qwen2.5-style tool turns

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TOOL_TAGS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>",
             "<rules_query>", "</rules_query>", "<rules>", "</rules>"]


def train_tokenizer(corpus: list[str], vocab_size: int = 1024):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=None, unk_token=None)
    # tool tags are ordinary (non-special) added tokens: they must survive decoding so that
    # stop strings like "</tool_call>" match the engine's detokenized text
    fast.add_tokens(TOOL_TAGS)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _corpus(method_cfg: dict) -> list[str]:
    from ascl_ray.data import synthetic
    from ascl_ray.rollout.method import build_context

    rows = synthetic.synthetic_prompts()
    ctx = build_context(method_cfg)
    texts = [r.text for r in rows] + [ctx.system_text or "", ctx.retriever_dump()]
    texts += [d.answer for d in synthetic.demonstrations(rows, copies=1)]
    if ctx.protocol is not None:  # tool calls as the demos write them: BPE merges them into few tokens
        demos = synthetic.demonstrations(rows, copies=1, consult_rate=1.0, noise=0.0)
        texts += [ctx.protocol.format_call(d.tool_call) for d in demos if d.tool_call] * 20
    texts += [f"#### {n}" for n in range(-9, 19)]
    return texts * 3


TINY_VERSION = 5  # bump when the builder changes, so cached tiny models are rebuilt


def build_spec(method_cfg: dict, sft_steps: int, sft_noise: float, seed: int) -> dict:
    """What a built tiny model depends on (stored in ascl_build.json; a mismatch triggers a rebuild)."""
    keep = ("name", "wire_format", "retriever", "retriever_opts", "spec_path", "max_tool_calls", "system_prompt",
            "prompt_style")
    return {"version": TINY_VERSION, "method": {k: method_cfg.get(k) for k in keep if k in method_cfg},
            "sft_steps": sft_steps, "sft_noise": sft_noise, "seed": seed}


def length_buckets(examples: list, bs: int, rng: random.Random, pool: int = 4) -> list[list]:
    """Shuffled batches; within each random pool of ``pool`` batches, examples are grouped by
    length (padding costs most of a CPU step otherwise) while batches stay mixed across types."""
    order = examples[:]
    rng.shuffle(order)
    batches = []
    for i in range(0, len(order), bs * pool):
        chunk = sorted(order[i:i + bs * pool], key=lambda e: len(e.ids))
        batches += [chunk[j:j + bs] for j in range(0, len(chunk), bs)]
    rng.shuffle(batches)
    return batches


def build_tiny_model(out_dir: str, *, method_cfg: Optional[dict] = None, hidden: int = 128, layers: int = 2,
                     heads: int = 2, sft_steps: int = 200, sft_lr: float = 3e-3, sft_noise: float = 0.3,
                     consult_rate: float = 0.5, seed: int = 0, log=print) -> str:
    """Build tokenizer + model + SFT warm start into ``out_dir`` (atomic). Returns out_dir."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    from ascl_ray.data import synthetic
    from ascl_ray.learner.sft import sft_examples, sft_loss
    from ascl_ray.rollout.method import build_context

    method_cfg = method_cfg or {"name": "ascl", "retriever_opts": {}}  # by_category, not compact (as before)
    t0 = time.time()
    torch.manual_seed(seed)
    random.seed(seed)
    tok = train_tokenizer(_corpus(method_cfg))
    cfg = Qwen2Config(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 4, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, head_dim=hidden // heads,
        max_position_embeddings=1024, tie_word_embeddings=True, rope_theta=10000.0,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None,
        torch_dtype="float32",
    )
    model = AutoModelForCausalLM.from_config(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"[tiny_model] tokenizer vocab={len(tok)}  model params={n_params / 1e6:.2f}M")

    ctx = build_context(method_cfg, tokenizer=tok)
    train_rows, _ = synthetic.split(synthetic.synthetic_prompts(seed=seed), seed=seed)
    demos = synthetic.demonstrations(train_rows, noise=sft_noise, consult_rate=consult_rate,
                                     use_tool=ctx.protocol is not None, seed=seed)
    examples = sft_examples(demos, tok, ctx)
    opt = torch.optim.AdamW(model.parameters(), lr=sft_lr, weight_decay=0.0)
    # warm-up, constant, then a linear decay over the last 30 %: a decay from the start stopped the warm
    # start from ever conditioning its first answer token on the prompt (math -> "####" at 1.5 %)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * min(1.0, max(0.1, (1 - s / sft_steps) / 0.3)))
    rng = random.Random(seed)
    model.train()
    batches = length_buckets(examples, 16, rng)
    for step in range(sft_steps):
        if not batches:
            batches = length_buckets(examples, 16, rng)
        batch = batches.pop()
        loss = sft_loss(model, batch, pad_id=tok.pad_token_id)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == sft_steps - 1:
            log(f"[tiny_model] sft step {step:4d}/{sft_steps}  loss {loss.item():.4f}")
    model.eval()

    from ascl_ray.io import atomic_directory

    out = Path(out_dir)
    with atomic_directory(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / "ascl_build.json").write_text(json.dumps(
            {"spec": build_spec(method_cfg, sft_steps, sft_noise, seed), "hidden": hidden, "layers": layers,
             "params": n_params, "seconds": round(time.time() - t0, 1)}, indent=2))
    log(f"[tiny_model] wrote {out} in {time.time() - t0:.1f}s")
    return str(out)


def main(argv: Optional[list[str]] = None) -> None:
    p = argparse.ArgumentParser(description="Build the embedded tiny default model (tokenizer + Qwen2 + SFT warm start).")
    p.add_argument("--out", required=True, help="output folder (HF format, safetensors)")
    p.add_argument("--method", default="ascl", choices=["ascl", "cada", "rules_in_context", "plain"])
    p.add_argument("--prompt-style", default="short", choices=["short", "full"])
    p.add_argument("--sft-steps", type=int, default=200)
    p.add_argument("--sft-noise", type=float, default=0.3, help="share of deliberately wrong demonstrations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="rebuild even if --out exists")
    a = p.parse_args(argv)
    if os.path.exists(os.path.join(a.out, "config.json")) and not a.force:
        print(f"[tiny_model] {a.out} exists (use --force to rebuild)")
        return
    build_tiny_model(a.out, method_cfg={"name": a.method, "prompt_style": a.prompt_style}, sft_steps=a.sft_steps, sft_noise=a.sft_noise, seed=a.seed)


if __name__ == "__main__":
    main()
