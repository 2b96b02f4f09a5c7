"""Shared fixtures. Real parts only: the tiny model is built by the project's own builder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def max_model_token_logprob_gap(rollouts, ref_logprobs) -> float:
    """Largest |reference - rollout| log-prob over the model tokens (loss mask 1) of ``rollouts``;
    ``ref_logprobs[i][t]`` is log p(token t+1 | tokens <= t) of prompt + response ``i``."""
    worst = 0.0
    for r, lp in zip(rollouts, ref_logprobs, strict=True):
        P = len(r.prompt_ids)
        for j, (m, rlp) in enumerate(zip(r.loss_mask, r.rollout_logprobs)):
            if m:
                worst = max(worst, abs(lp[P - 1 + j] - rlp))
    return worst


@pytest.fixture(scope="session")
def logprob_gap():
    """``max_model_token_logprob_gap`` for tests (conftest is not importable as a module)."""
    return max_model_token_logprob_gap


def synthetic_rollouts(tok, seed: int, n: int = 8):
    """``n`` rollouts for a learner without an engine (``n`` divides over 2 ranks): prompt + response token
    ids with a tool-like masked span, made-up rollout log-probs and +-1 advantages."""
    import random

    from ascl_ray.batch import PromptRow, Rollout

    rng = random.Random(seed)
    words = ["rules", "policy", "answer", "refuse", "comply", "four", "the", "is", "tool", "check"]
    out = []
    for i in range(n):
        prompt = tok.encode(f"Question {seed}-{i}: is it allowed?")
        resp = tok.encode(" " + " ".join(rng.choice(words) for _ in range(6 + i % 3)))
        mask = [1] * len(resp)
        mask[2:4] = [0, 0]
        out.append(Rollout(group_id=i // 4, prompt=PromptRow(f"p{seed}-{i}", "is it allowed?", "harmful"),
                           prompt_ids=prompt, response_ids=resp, loss_mask=mask,
                           rollout_logprobs=[-2.0 * m for m in mask], advantage=1.0 if i % 2 else -1.0))
    return out


def max_nested_diff(a, b) -> float:
    """Largest |x - y| over two equally shaped lists of lists (e.g. probe log-probs of two learners)."""
    return max(abs(x - y) for u, v in zip(a, b, strict=True) for x, y in zip(u, v, strict=True))


@pytest.fixture(scope="session")
def rollouts_for_learner():
    """``synthetic_rollouts`` for tests (conftest is not importable as a module)."""
    return synthetic_rollouts


@pytest.fixture(scope="session")
def nested_diff():
    """``max_nested_diff`` for tests."""
    return max_nested_diff


@pytest.fixture(scope="session")
def tiny_model_path() -> str:
    """The embedded default model (artifacts/tiny-model), built once with the default config;
    `make train` reuses the same folder."""
    from ascl_ray.cli import compose
    from ascl_ray.driver import ensure_model

    cfg = compose([f"model.path={REPO / 'artifacts' / 'tiny-model'}"])
    return ensure_model(cfg)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_path)


@pytest.fixture(scope="session")
def open_stack(tiny_model_path, tiny_tokenizer):
    """``with open_stack(overrides, namespace) as s:`` a real Ray + vLLM + DeepSpeed ZeRO-3 stack of the tiny
    model (learners and rollout workers, no reward pool, no sync channel), built by the runtime every entry
    point uses. ``s``: cfg, learners, rollout, rows (train prompts), probes (the sync probe sequences), tok."""
    import contextlib

    @contextlib.contextmanager
    def _open(overrides: list[str], namespace: str):
        import ray

        from ascl_ray.cli import compose
        from ascl_ray.driver import load_prompts, probe_sequences
        from ascl_ray.rollout.method import build_context
        from ascl_ray.runtime import build_stack

        cfg = compose([f"model.path={tiny_model_path}", *overrides])
        ray.init(num_cpus=2, include_dashboard=False, namespace=namespace,
                 runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}})
        try:
            rt = build_stack(cfg, tiny_model_path, reward=False, sync=False, seed=0)
            try:
                rows, _ = load_prompts(cfg)
                ctx = build_context(cfg.method, tokenizer=tiny_tokenizer)
                yield dict(cfg=cfg, learners=rt.learners, rollout=rt.rollout, rows=rows,
                           probes=probe_sequences(tiny_tokenizer, rows, ctx.system_text), tok=tiny_tokenizer)
            finally:
                rt.close()
        finally:
            ray.shutdown()

    return _open
