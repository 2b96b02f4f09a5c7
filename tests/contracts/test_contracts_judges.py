"""Contract of every registered judge (``ascl_ray/reward/judge_base.py``)::

    judge = get_judge(name, **options)
    judge.judge(prompts, responses) -> list[JudgeVerdict]   # one per (prompt, response) pair

Each verdict has the fields of ``JudgeVerdict`` (``safe``, ``refusal``: bool; ``score`` in [0, 1]; ``raw``: str;
``valid``: bool; ``categories``: list of str). Unequal lengths are a ValueError; an option the factory does not
take is a ``JudgeOptionError`` (ValueError) before anything is built.

Judges that need model files are built as the existing judge tests build them: the learned heads with one
shared real MiniLM encoder (``tests/reward/test_reward_judges_real.py``), the guard model with a fake engine
(``tests/reward/test_reward_judges.py``). A plug-in judge that needs options gets an entry in ``JUDGE_BUILD``.
"""

from __future__ import annotations

import dataclasses

import pytest

from ascl_ray.registry import get_registry
from ascl_ray.reward.judge_base import JudgeOptionError, JudgeVerdict, check_options, get_judge, judge_options

JUDGES = get_registry("judge")
NAMES = JUDGES.names()
VERDICT_FIELDS = [f.name for f in dataclasses.fields(JudgeVerdict)]

PROMPTS = ["How do I make a bomb?", "How do I kill a python process?", "Tell me a joke."]
RESPONSES = ["Sorry, but I can't assist with that.", "Use kill -9 <pid>.", ""]


class FakeEngine:
    """Stands in for a served guard model (as in tests/reward/test_reward_judges.py)."""

    def generate(self, prompts):
        return ["unsafe\nS1" if "bomb" in p else "safe" for p in prompts]


@pytest.fixture(scope="module")
def minilm():
    from ascl_ray.reward.classifier import MiniLMEncoder

    try:
        return MiniLMEncoder(max_length=64)
    except FileNotFoundError as e:  # pragma: no cover - the package ships with the dev environment
        pytest.skip(f"MiniLM encoder files not available: {e}")


# judge name -> its build options; ``encoder()`` returns the shared MiniLM encoder (built on first use)
JUDGE_BUILD = {
    "guard_model": lambda encoder: {"engine": FakeEngine(), "style": "llama_guard3"},
    "refusal_robust": lambda encoder: {"encoder": encoder()},
    "classifier": lambda encoder: {"encoder": encoder()},
    "test_slow": lambda encoder: {"delay_s": 0.0},
}


def build(name, request):
    opts = JUDGE_BUILD.get(name, lambda encoder: {})(lambda: request.getfixturevalue("minilm"))
    return get_judge(name, **opts)


def test_builtin_judges_registered():
    assert {"refusal", "refusal_robust", "classifier", "guard_model"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_options_introspection(name):
    opts = judge_options(name)
    assert opts is None or (isinstance(opts, list) and all(isinstance(o, str) for o in opts))
    for k in JUDGE_BUILD.get(name, lambda encoder: {})(lambda: None):
        assert opts is None or k in opts, f"{name}: JUDGE_BUILD passes {k!r}, which the factory does not take"


@pytest.mark.parametrize("name", NAMES)
def test_one_verdict_per_pair(name, request):
    j = build(name, request)
    assert callable(getattr(j, "judge", None))
    out = j.judge(PROMPTS, RESPONSES)
    assert isinstance(out, list) and len(out) == len(PROMPTS)
    for v in out:
        for f in VERDICT_FIELDS:
            assert hasattr(v, f), f"{name}: verdict lacks field {f!r}"
        assert isinstance(v.safe, bool) and isinstance(v.refusal, bool) and isinstance(v.valid, bool)
        assert isinstance(v.score, (int, float)) and not isinstance(v.score, bool) and 0.0 <= v.score <= 1.0
        assert isinstance(v.raw, str)
        assert isinstance(v.categories, list) and all(isinstance(c, str) for c in v.categories)
        if not v.valid:
            assert v.safe is False, f"{name}: an invalid verdict must be conservatively unsafe"
    assert j.judge([], []) == []


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_is_a_clear_error(name, request):
    j = build(name, request)
    with pytest.raises(ValueError):
        j.judge(PROMPTS, RESPONSES[:2])  # unequal lengths
    if judge_options(name) is not None:  # a factory without **kwargs: an unknown option is named
        with pytest.raises(JudgeOptionError, match="no_such_option"):
            check_options(name, {"no_such_option": 1})
        with pytest.raises(JudgeOptionError, match="no_such_option"):
            get_judge(name, no_such_option=1)
