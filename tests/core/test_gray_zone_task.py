"""The controlled default task: gray-zone prompts whose verdict is the episode's operator policy, stated
only in the rule tool's answer; ground truth (needs_rules) consistent with what the tool says."""

from __future__ import annotations

import random

import pytest

from ascl_ray.batch import PromptRow, Rollout
from ascl_ray.data import synthetic
from ascl_ray.reward.scoring import score_rollout
from ascl_ray.rollout.method import build_context
from ascl_ray.safety.spec import RuleStore, SpecError, load_store

ASCL = {"name": "ascl", "prompt_style": "short", "retriever_opts": {"compact": True}, "policy_draw": "episode"}


def test_rows_carry_ground_truth():
    rows = synthetic.synthetic_prompts()
    store = load_store("default")
    gray = [r for r in rows if r.prompt_type == "gray_zone"]
    assert len(gray) == len(synthetic.GRAY) * len(synthetic.GRAY_FRAMES)
    assert all(r.needs_rules and r.category in store.operator_categories for r in gray)
    assert not any(r.needs_rules for r in rows if r.prompt_type != "gray_zone")
    # a jsonl row may set needs_rules explicitly; a gray_zone row without a category is an error
    assert PromptRow("x", "t", "harmful", needs_rules=True).needs_rules is True
    with pytest.raises(ValueError, match="gray_zone row needs field 'category'"):
        PromptRow("g", "t", "gray_zone")


@pytest.mark.parametrize("retriever", ["by_category", "bm25", "whole_spec"])
def test_tool_answer_states_the_drawn_policy_and_only_it(retriever, tiny_tokenizer):
    ctx = build_context({**ASCL, "retriever": retriever, "retriever_opts": {}}, tokenizer=tiny_tokenizer)
    rng = random.Random(3)
    seen = set()
    for cat in ctx.store.operator_categories:
        for _ in range(6):
            policy = ctx.draw_policy(rng)
            assert set(policy) == set(ctx.store.operator_categories)
            seen.add(policy[cat])
            call = ctx.protocol.format_call({"query": cat.replace("_", " "), "category": cat})
            text, info = ctx.tool_turn_text(call, 0, policy=policy)
            assert info["valid"]
            pol = ctx.store[cat].policy
            want, other = (pol.comply, pol.refuse) if policy[cat] == "comply" else (pol.refuse, pol.comply)
            lines = [ln for ln in text.splitlines() if cat in ln]     # the category's own line(s)
            assert any(want in ln for ln in lines) and not any(other in ln for ln in lines), lines
    assert seen == {"comply", "refuse"}           # both verdicts are drawn


def test_fixed_policy_and_eval_use_defaults_or_overrides():
    ctx = build_context({**ASCL, "policy_draw": "fixed", "policy": {"gambling": "refuse"}})
    p = ctx.draw_policy(random.Random(0))
    assert p["gambling"] == "refuse" and p["alcohol"] == ctx.store["alcohol"].policy.default
    assert build_context(ASCL, train=False).policy_draw == "fixed"      # eval never draws
    with pytest.raises(ValueError, match="method.policy"):
        build_context({**ASCL, "policy": {"violence_weapons": "comply"}})


def test_demos_follow_the_tool_turn_and_guess_without_it():
    rows = [r for r in synthetic.synthetic_prompts() if r.prompt_type == "gray_zone"]
    demos = synthetic.demonstrations(rows, noise=0.0, consult_rate=0.5, copies=8, seed=1)
    consulted = [d for d in demos if d.tool_call]
    direct = [d for d in demos if not d.tool_call]
    assert consulted and direct
    for d in consulted:   # noise 0: the answer is right for the verdict the demo's tool turn shows
        assert d.answer == synthetic.gray_answer(d.row, d.policy[d.row.category])
    refusals = sum(d.answer == synthetic.REFUSAL for d in direct) / len(direct)
    assert 0.3 < refusals < 0.7                   # direct demos guess


def test_every_kind_consults_in_demos_with_valid_calls(tiny_tokenizer):
    rows = synthetic.synthetic_prompts()
    demos = synthetic.demonstrations(rows, consult_rate=0.5, copies=4)
    ctx = build_context(ASCL, tokenizer=tiny_tokenizer)
    for t in ("gray_zone", "harmful", "benign_sensitive", "math"):
        sub = [d for d in demos if d.row.prompt_type == t]
        rate = sum(d.tool_call is not None for d in sub) / len(sub)
        assert 0.35 < rate < 0.65, (t, rate)
    for d in demos:
        if d.tool_call:
            _, info = ctx.tool_turn_text(ctx.protocol.format_call(d.tool_call), 0, policy=d.policy)
            assert info["valid"], d.tool_call


def test_gray_zone_reward_follows_the_episode_policy():
    refusal = {"safe": True, "refusal": True}
    comply = {"safe": True, "refusal": False}
    kw = dict(malformed_call=False, has_final_answer=True, consulted=False)
    assert score_rollout("gray_zone", "no", None, None, verdict=refusal, expected="refuse", **kw)[0] == 1.0
    assert score_rollout("gray_zone", "no", None, None, verdict=comply, expected="refuse", **kw)[0] == 0.0
    assert score_rollout("gray_zone", "ok", None, None, verdict=comply, expected="comply", **kw)[0] == 1.0
    assert score_rollout("gray_zone", "no", None, None, verdict=refusal, expected="comply", **kw)[0] == 0.0
    with pytest.raises(ValueError, match="expected='comply' or 'refuse'"):
        score_rollout("gray_zone", "x", None, None, verdict=comply, expected=None, **kw)
    row = PromptRow("g", "t", "gray_zone", category="gambling")
    r = Rollout(0, row, [1], [2], [1], [0.0], policy={"gambling": "refuse", "alcohol": "comply"})
    assert r.expected_verdict == "refuse"


def test_an_unneeded_consultation_runs_out_of_budget(tiny_tokenizer):
    """The cost of consulting is the budget the rules eat: with the default rollout budget (tool turns
    counted), a consulted answer fits on a gray-zone prompt and cannot fit on any no-rules prompt."""
    from ascl_ray.cli import compose
    from ascl_ray.rollout.chat import encode_segment

    cfg = compose([])
    budget = cfg.rollout.max_new_tokens
    assert cfg.rollout.budget_includes_tool
    ctx = build_context({**ASCL}, tokenizer=tiny_tokenizer)
    demos = synthetic.demonstrations(synthetic.synthetic_prompts(), noise=0.0, consult_rate=1.0, copies=1)
    for d in demos:
        call = ctx.protocol.format_call(d.tool_call)
        turn = ctx.tool_turn_text(call, 0, policy=d.policy)[0]
        n = len(encode_segment(tiny_tokenizer, call)) + len(encode_segment(tiny_tokenizer, turn)) + len(
            encode_segment(tiny_tokenizer, d.answer)) + 1
        if d.row.needs_rules:
            assert n <= budget - 8, (d.row.text, n)
        else:
            assert n > budget, (d.row.text, n)


def test_spec_policy_validation(tmp_path):
    bad = {"version": 1, "categories": [{"name": "x", "description": "", "policy": {"default": "maybe",
                                                                                     "comply": "ok"}}]}
    with pytest.raises(SpecError) as e:
        RuleStore.from_dict(bad, source="s.yaml")
    msg = str(e.value)
    assert "s.yaml: categories[0].policy.default: 'maybe' not in ('comply', 'refuse')" in msg
    assert "categories[0].policy.refuse: missing required field" in msg
    store = load_store("default")
    again = RuleStore.from_dict(store.to_dict())
    assert again["gambling"].policy == store["gambling"].policy
