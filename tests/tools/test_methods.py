"""Methods as plug-ins (``ascl_ray.rollout.method``): the tools a method offers reach its system prompt
and its tool turns; ``build_context`` takes a MethodCfg (or a dict of its fields, defaults from MethodCfg)."""

import dataclasses
import random
import re
from pathlib import Path

import jinja2
import pytest

from ascl_ray.config import MethodCfg
from ascl_ray.registry import get_registry, import_plugins
from ascl_ray.rollout.method import build_context, system_prompt
from ascl_ray.safety.render import BASE_SYSTEM_PROMPT, render_category
from ascl_ray.safety.spec import load_default_store
from ascl_ray.tools import CHATML_TOOL_TEMPLATE, LIMIT_REACHED_TEXT

ROOT = Path(__file__).resolve().parents[2]
STORE = load_default_store()


class ChatMLTok:
    """Just the chat template (what tool-turn rendering uses): Qwen2.5-style ChatML with a tool role."""

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        return jinja2.Template(CHATML_TOOL_TEMPLATE).render(messages=messages, add_generation_prompt=add_generation_prompt)


def test_no_method_name_switches_left():
    for f in ("ascl_ray/rollout/method.py", "ascl_ray/safety/render.py"):
        src = (ROOT / f).read_text()
        assert not re.search(r"""(name|method)\s*(==|!=|in)\s*\(?["']""", src), f


def test_methodcfg_and_its_dict_give_the_same_context():
    cfg = MethodCfg(name="ascl", retriever="bm25", retriever_opts={}, prompt_style="full", policy={"gambling": "refuse"})
    a, b = build_context(cfg, tokenizer=ChatMLTok()), build_context(dataclasses.asdict(cfg), tokenizer=ChatMLTok())
    assert a.system_text == b.system_text and a.stop_strings == b.stop_strings == ["</tool_call>"]
    assert (a.policy_draw, a.fixed_policy) == (b.policy_draw, b.fixed_policy) == ("episode", {"gambling": "refuse"})
    call = a.protocol.format_call({"query": "betting tips", "category": "gambling"})
    assert a.tool_turn_text(call, 0, policy={"gambling": "refuse"}) == b.tool_turn_text(call, 0, policy={"gambling": "refuse"})


def test_dict_defaults_are_the_methodcfg_defaults():
    ctx = build_context({"name": "ascl"}, tokenizer=ChatMLTok())
    assert ctx.policy_draw == MethodCfg.policy_draw == "episode"
    assert build_context({"name": "ascl"}, train=False).policy_draw == "fixed"        # eval never draws
    text, info = ctx.tool_turn_text(ctx.protocol.format_call({"category": "cyber"}), 0)
    assert info["valid"] and render_category(STORE["cyber"], compact=True) in text    # retriever_opts compact
    assert "<tool_call>" in ctx.system_text                                           # prompt_style: full
    assert build_context(MethodCfg()).system_text == ctx.system_text                  # unresolved ${model...}
    assert build_context({"name": "ascl", "prompt_style": "short"}).system_text == "Tool: retrieve_safety_rules."
    assert build_context({"name": "plain"}).protocol is None
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['nope'\]"):
        build_context({"name": "ascl", "nope": 1})
    with pytest.raises(ValueError, match="method='sft'"):
        build_context({"name": "sft"})


def test_in_context_methods_fall_back_to_plain():
    cada = {"name": "cada", "max_tool_calls": 0}
    assert "Safety codes with example cases" in build_context(cada).system_text
    assert build_context({**cada, "context_at_eval": False}, train=False).system_text == BASE_SYSTEM_PROMPT
    assert build_context({**cada, "context_at_train": False, "prompt_style": "short"}).system_text == BASE_SYSTEM_PROMPT
    assert build_context({"name": "rules_in_context", "prompt_style": "short"}).system_text.startswith("Safety codes:\n")
    with pytest.raises(ValueError, match="needs a rule store"):
        system_prompt("rules_in_context", None)


def test_a_plugin_method_offering_two_tools():
    import_plugins(["ascl_calc_tool"])
    assert "ascl_calc" in get_registry("method").names()
    ctx = build_context({"name": "ascl_calc", "max_tool_calls": 2}, tokenizer=ChatMLTok())
    assert [t.name for t in ctx.protocol.tools] == ["retrieve_safety_rules", "calculator"]
    assert ctx.retriever is ctx.protocol.tools[0].retriever and ctx.retriever is not None
    assert ctx.system_text.startswith(BASE_SYSTEM_PROMPT + "\n\nYou may look up safety rules")
    assert "with the tool calculator" in ctx.system_text and ctx.system_text.endswith("At most 2 lookups.")
    assert ctx.system_text == system_prompt("ascl_calc", STORE, ctx.protocol)
    assert build_context({"name": "ascl_calc", "prompt_style": "short"}).system_text == \
        "Tools: retrieve_safety_rules, calculator."

    text, info = ctx.tool_turn_text("6 times 7? " + ctx.protocol.format_call({"expression": "6 * 7"}, tool="calculator"), 0)
    assert text == "<|im_end|>\n<|im_start|>user\n<tool_response>\n42\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
    assert info == {"valid": True, "malformed": False, "limit": False, "category": None, "error": None,
                    "tool": "calculator"}
    policy = ctx.draw_policy(random.Random(0))
    text, info = ctx.tool_turn_text(ctx.protocol.format_call({"category": "gambling"}), 1, policy=policy)
    assert info["valid"] and info["tool"] == "retrieve_safety_rules" and info["category"] == "gambling"
    assert STORE["gambling"].policy.text(policy["gambling"]) in text
    text, info = ctx.tool_turn_text(ctx.protocol.format_call({"expression": "1"}, tool="calculator"), 2)
    assert info["limit"] and LIMIT_REACHED_TEXT in text
