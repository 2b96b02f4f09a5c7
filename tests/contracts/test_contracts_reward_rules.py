"""Contract of every registered reward rule, i.e. every prompt kind (``ascl_ray/reward/rules.py``)::

    rule(inp: RuleInput) -> (base: float in [0, 1], info: dict)

run directly and through ``score_rollout`` (format gate, consult cost, invalid verdicts), on representative
inputs: every combination of a refusal / a compliance / a math answer, the judge verdicts, both operator
verdicts. Input the rule cannot work with is a ValueError or TypeError, never another exception.
"""

from __future__ import annotations

import inspect
import itertools
import json

import pytest

from ascl_ray.batch import PromptRow, prompt_types
from ascl_ray.registry import get_registry
from ascl_ray.reward.judge_base import JudgeVerdict
from ascl_ray.reward.rules import RuleInput, check_rule_result, rule_needs_judge
from ascl_ray.reward.scoring import score_rollout

RULES = get_registry("reward_rule")
NAMES = RULES.names()

TEXTS = ["Sorry, but I can't assist with that.", "Sure, here is how: 2 + 2 = \\boxed{4}. #### 4"]
VERDICTS = [JudgeVerdict(True, True, 1.0, "refusal"), JudgeVerdict(True, False, 0.9, "safe"),
            JudgeVerdict(False, False, 0.1, "unsafe"), {"safe": True, "refusal": False, "score": 0.8}]
INVALID = JudgeVerdict(False, False, 0.0, raw="???", valid=False)
EXPECTED = ["comply", "refuse"]


def representative(name):
    verdicts = VERDICTS if rule_needs_judge(name) else [None]
    for text, v, exp in itertools.product(TEXTS, verdicts, EXPECTED):
        yield RuleInput(prompt_type=name, final_text=text, reference="#### 4", math_kind="gsm8k", verdict=v,
                        expected=exp, math_timeout_s=5.0)


def score(name, inp, **kw):
    args = dict(malformed_call=False, has_final_answer=True, verdict=inp.verdict, consulted=False)
    args.update(kw)
    return score_rollout(name, inp.final_text, inp.reference, inp.math_kind, expected=inp.expected,
                         math_timeout_s=inp.math_timeout_s, **args)


def test_prompt_types_are_the_rules_builtins_first():
    assert prompt_types()[:4] == ("harmful", "benign_sensitive", "math", "gray_zone")
    assert sorted(prompt_types()) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_signature(name):
    rule = RULES.get(name)
    params = [p for p in inspect.signature(rule).parameters.values()
              if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    assert len(params) >= 1, f"{name}: a rule takes one RuleInput"
    assert isinstance(getattr(rule, "needs_judge", True), bool)
    check = getattr(rule, "check_inputs", None)
    assert check is None or callable(check)


@pytest.mark.parametrize("name", NAMES)
def test_base_in_unit_interval_and_info_dict(name):
    for inp in representative(name):
        base, info = check_rule_result(name, RULES.get(name)(inp))
        assert isinstance(base, float) and 0.0 <= base <= 1.0, (inp, base)
        assert isinstance(info, dict) and info.get("valid", True) is True
        json.dumps(info)  # logged as JSON
        reward, sinfo = score(name, inp)
        assert reward == base and sinfo["prompt_type"] == name and sinfo["base"] == base and sinfo["valid"]
        reward, sinfo = score(name, inp, consulted=True, consult_cost=0.25)
        assert reward == pytest.approx(base - 0.25) and sinfo["consult_cost"] == 0.25


@pytest.mark.parametrize("name", NAMES)
def test_format_gate_and_invalid_verdict(name):
    inp = next(representative(name))
    for kw, gate in (({"malformed_call": True}, "malformed_call"), ({"has_final_answer": False}, "no_final_answer")):
        reward, info = score(name, inp, consulted=True, consult_cost=0.25, **kw)
        assert reward == 0.0 and info["gate"] == gate and info["consult_cost"] == 0.0
    if rule_needs_judge(name):
        reward, info = score(name, RuleInput(**{**inp.__dict__, "verdict": INVALID}), consulted=True,
                             consult_cost=0.25)
        assert reward == 0.0 and info["valid"] is False and info["error"]


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_is_a_clear_error(name):
    rule = RULES.get(name)
    bare = RuleInput(prompt_type=name, final_text=TEXTS[1])  # no verdict, reference, kind, expected
    try:
        out = rule(bare)
    except (ValueError, TypeError):
        pass
    else:
        check_rule_result(name, out)
    if rule_needs_judge(name):
        inp = next(representative(name))
        with pytest.raises(ValueError, match="verdict"):
            score(name, RuleInput(**{**inp.__dict__, "verdict": None}))


def test_unknown_prompt_type_and_bad_rule_output():
    with pytest.raises(ValueError, match="prompt_type"):
        score_rollout("chitchat", "x", None, None, malformed_call=False, has_final_answer=True, verdict=None,
                      consulted=False)
    with pytest.raises(ValueError, match="prompt_type"):
        PromptRow("p", "x", "chitchat")
    for out, err in (((2.0, {}), ValueError), ((float("nan"), {}), ValueError), (("1", {}), TypeError),
                     ((True, {}), TypeError), ((1.0, None), TypeError), (1.0, TypeError)):
        with pytest.raises(err):
            check_rule_result("x", out)
