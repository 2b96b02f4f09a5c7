"""The tool contract, over every registered tool and wire format (a new one is tested by registering it;
``ascl_calc_tool`` registers a second tool, ``calculator``): a JSON-schema-like argument schema, bad
arguments -> ToolError with a clear message, ``format_call`` -> ``parse`` round trip, results as text;
then the generic argument checker's exact messages and several tools sharing one hermes protocol."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ascl_calc_tool  # noqa: F401 - registers the calculator tool and the ascl_calc method
from ascl_ray.registry import get_registry
from ascl_ray.safety.spec import load_default_store
from ascl_ray.tools import (LIMIT_REACHED_TEXT, MALFORMED_CALL_TEXT, TOOL_NAME, Tool, ToolEnv, ToolError,
                            ToolSession, check_arguments, make_tool_protocol, make_tools)
from ascl_ray.tools.base import JSON_TYPES

ROOT = Path(__file__).resolve().parents[2]
STORE = load_default_store()
ENV = ToolEnv(store=STORE)
TOOL_NAMES = get_registry("tool").names()
FORMAT_NAMES = get_registry("wire_format").names()


def build(name: str) -> Tool:
    return make_tools([name], ENV)[0]


def _types(prop):
    return [prop["type"]] if isinstance(prop["type"], str) else list(prop["type"])


def test_builtins_and_the_test_plugin_are_registered():
    assert {TOOL_NAME, "calculator"} <= set(TOOL_NAMES)
    assert {"hermes", "plain_tags"} <= set(FORMAT_NAMES)
    assert {"whole_spec", "by_category", "bm25"} <= set(get_registry("retriever").names())
    assert {"plain", "ascl", "cada", "rules_in_context"} <= set(get_registry("method").names())
    assert {"openai_model_spec", "aegis_safety_policy"} <= set(get_registry("corpus_loader").names())


# ---------------------------------------------------------------------------------------- per tool
@pytest.mark.parametrize("name", TOOL_NAMES)
def test_schema_is_a_json_schema_object(name):
    t = build(name)
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", t.name) and t.description.strip() and t.purpose.strip()
    p = t.parameters
    assert json.loads(json.dumps(p)) == p  # plain JSON
    assert p["type"] == "object" and p.get("additionalProperties") is False
    props = p["properties"]
    assert props and all(isinstance(k, str) and isinstance(v, dict) for k, v in props.items())
    for key, prop in props.items():
        types = _types(prop)
        assert types and set(types) <= set(JSON_TYPES), (key, types)
        assert isinstance(prop.get("description", ""), str)
        if "enum" in prop:
            assert isinstance(prop["enum"], list) and prop["enum"]
        if "maxLength" in prop:
            assert isinstance(prop["maxLength"], int) and prop["maxLength"] > 0
    assert isinstance(p.get("required", []), list) and set(p.get("required", [])) <= set(props)
    assert t.schema() == {"type": "function", "function": {"name": t.name, "description": t.description,
                                                           "parameters": p}}
    assert set(t.example_arguments()) <= set(props)
    for ex in t.examples():  # the examples are valid, and checking is idempotent
        checked = t.check(ex)
        assert t.check(checked) == checked


def _wrong_value(prop):
    types = _types(prop)
    return "x" if "string" not in types else ([1] if "array" not in types else {"a": 1})


@pytest.mark.parametrize("name", TOOL_NAMES)
def test_bad_arguments_raise_a_tool_error_naming_the_problem(name):
    t = build(name)
    ex = t.examples()[0]
    for bad in ([ex], "x", None, 3):
        with pytest.raises(ToolError, match="arguments must be a JSON object"):
            t.check(bad)
    with pytest.raises(ToolError, match=r"unexpected argument\(s\) 'zz_not_an_argument'; allowed: '"):
        t.check({**ex, "zz_not_an_argument": 1})
    for key, prop in t.parameters["properties"].items():
        with pytest.raises(ToolError, match=f"argument '{key}' must be "):
            t.check({**ex, key: _wrong_value(prop)})
        if "maxLength" in prop:
            with pytest.raises(ToolError, match=f"argument '{key}' too long"):
                t.check({**ex, key: "x" * (prop["maxLength"] + 1)})
    for key in t.parameters.get("required", []):
        with pytest.raises(ToolError, match=f"missing argument '{key}'"):
            t.check({k: v for k, v in ex.items() if k != key})


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
@pytest.mark.parametrize("name", TOOL_NAMES)
def test_format_call_parse_round_trip_and_run(fmt, name):
    t = build(name)
    proto = make_tool_protocol(fmt, [t], max_tool_calls=2)
    assert proto.stop_strings and proto.parse("An answer without a call.") is None
    instructions = proto.format_instructions()
    assert proto.open_tag in instructions and "At most 2 " in instructions
    if fmt == "hermes":
        assert t.name in instructions
    for ex in t.examples():
        text = proto.format_call(ex)
        assert any(text.endswith(s) for s in proto.stop_strings)
        segment = "Let me check. " + text
        call = proto.parse(segment)
        assert call.ok, call.error
        assert call.name == t.name and call.arguments == t.check(ex)
        assert segment[call.span[0]:call.span[1]] == text
        res = proto.run(call, call_index=0)
        assert res.status in ("ok", "malformed") and isinstance(res.content, str) and res.content
        assert proto.run(call, call_index=2).status == "limit"
        assert isinstance(proto.render_tool_turn(None, res.content) if proto.inline else res.content, str)


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
@pytest.mark.parametrize("name", TOOL_NAMES)
def test_parse_never_raises_on_junk(fmt, name):
    proto = make_tool_protocol(fmt, [build(name)])
    for junk in (b"<tool_call>", proto.open_tag, proto.close_tag, proto.open_tag * 2 + proto.close_tag,
                 proto.open_tag + "\x00{" + proto.close_tag, "\ud7ff" + proto.close_tag, proto.open_tag + proto.close_tag):
        out = proto.parse(junk)
        assert out is not None and "internal parse error" not in (out.error or "")
    assert proto.parse(None).error == "segment is not text (NoneType)"
    assert proto.parse(proto.open_tag + " " + proto.close_tag).error  # empty call


# ---------------------------------------------------------------------------------------- generic checks
SCHEMA = {"type": "object", "properties": {
    "a": {"type": "string", "maxLength": 3}, "b": {"type": ["integer", "null"]}, "c": {"type": "boolean"},
    "d": {"type": "string", "enum": ["x", "y"]}}, "required": ["a"], "additionalProperties": False}


@pytest.mark.parametrize("args, message", [
    ({"a": "q", "zz": 1, "yy": 2}, "unexpected argument(s) 'zz', 'yy'; allowed: 'a', 'b', 'c', 'd'"),
    ({"a": 5}, "argument 'a' must be a string, got number"),
    ({"a": "q", "b": 1.5}, "argument 'b' must be an integer or null, got number"),
    ({"a": "q", "b": True}, "argument 'b' must be an integer or null, got boolean"),
    ({"a": "q", "c": "yes"}, "argument 'c' must be a boolean, got string"),
    ({"b": 1}, "missing argument 'a'"),
    ({"a": None}, "missing argument 'a'"),
    ({"a": "qqqq"}, "argument 'a' too long (4 chars > 3)"),
    ({"a": "q", "d": "z"}, "argument 'd' must be one of 'x', 'y', got 'z'"),
    ([], "arguments must be a JSON object, got array"),
])
def test_check_arguments_messages(args, message):
    with pytest.raises(ToolError) as e:
        check_arguments(SCHEMA, args)
    assert str(e.value) == message


def test_check_arguments_drops_nulls_and_keeps_values():
    assert check_arguments(SCHEMA, {"a": "q", "b": None, "c": None}) == {"a": "q"}
    assert check_arguments(SCHEMA, {"a": "q", "b": 3, "c": False, "d": "y"}) == {"a": "q", "b": 3, "c": False, "d": "y"}
    assert check_arguments(SCHEMA, {"a": "qqqq"}, values=False) == {"a": "qqqq"}  # values: enum, maxLength


# ---------------------------------------------------------------------------------------- several tools
def _two_tools(**kw):
    return make_tool_protocol("hermes", [TOOL_NAME, "calculator"], env=ENV, **kw)


def test_hermes_dispatches_on_the_tool_name():
    proto = _two_tools(max_tool_calls=2)
    calc = proto.parse("x " + proto.format_call({"expression": "6*7"}, tool="calculator"))
    assert calc.ok and calc.name == "calculator" and calc.arguments == {"expression": "6*7"}
    assert proto.run(calc).content == "42" and proto.run(calc).status == "ok"
    rules = proto.parse(proto.format_call({"query": "q", "category": "Cyber"}))
    assert rules.ok and rules.name == TOOL_NAME and rules.arguments == {"query": "q", "category": "cyber"}
    assert proto.run(rules).content.startswith("## cyber")
    unknown = proto.parse('<tool_call>{"name": "web_search", "arguments": {}}</tool_call>')
    assert unknown.error == "unknown tool name 'web_search'; the tools are 'retrieve_safety_rules', 'calculator'"
    assert proto.run(unknown).content == MALFORMED_CALL_TEXT.format(error=unknown.error)  # the primary speaks
    bad = proto.parse(proto.format_call({"expression": "os.system(1)"}, tool="calculator"))
    assert bad.ok and proto.run(bad).content.startswith("Error: invalid calculator call: unsupported expression")
    wrong = proto.parse(proto.format_call({"query": "q"}, tool="calculator"))
    assert wrong.error.startswith("unexpected argument(s) 'query'; allowed: 'expression'")
    assert proto.run(wrong).content.startswith("Error: invalid calculator call: unexpected argument(s)")
    with pytest.raises(ValueError, match="unknown tool name 'nope'"):
        proto.format_call({}, tool="nope")
    with pytest.raises(ValueError, match="offered twice"):
        make_tool_protocol("hermes", [TOOL_NAME, TOOL_NAME], env=ENV)
    with pytest.raises(ValueError, match="plain_tags carries one tool"):
        make_tool_protocol("plain_tags", [TOOL_NAME, "calculator"], env=ENV)


def test_instructions_describe_every_tool_then_the_limits():
    text = _two_tools(max_tool_calls=2, answer_marker="</think>").format_instructions()
    lines = text.split("\n")
    assert lines[0].startswith("You may look up safety rules before answering with the tool retrieve_safety_rules.")
    assert "You may compute arithmetic with the tool calculator. To call it, write:" in lines
    assert '<tool_call>{"name": "calculator", "arguments": {"expression": "..."}}</tool_call>' in lines
    assert lines[-1] == "The result is returned to you. At most 2 lookups. Never look up after </think>."
    one = make_tool_protocol("hermes", [TOOL_NAME], env=ENV).format_instructions()
    assert text.startswith(one[: one.index("At most")].rstrip())  # the first tool's paragraph unchanged


def test_session_over_two_tools_counts_every_call():
    proto = _two_tools(max_tool_calls=2)
    s = ToolSession(proto, policy={"gambling": "refuse"})
    assert s.step("no call") is None
    assert s.step(proto.format_call({"expression": "1 + 1"}, tool="calculator")).content == "2"
    assert s.step(proto.format_call({"category": "gambling"})).status == "ok"
    assert s.step(proto.format_call({"expression": "2"}, tool="calculator")).content == LIMIT_REACHED_TEXT
    assert s.record() == {"consulted": True, "n_calls": 3, "categories": ["gambling"], "malformed_call": False}
    assert STORE["gambling"].policy.refuse in s.results[1].content  # the episode's policy reached the tool


def test_tools_package_is_pure():
    code = ("import sys, ascl_ray.tools; from ascl_ray.registry import get_registry; "
            "[get_registry(p) for p in ('tool', 'wire_format', 'retriever', 'corpus_loader')]; "
            "print(sorted(m for m in ('ray', 'vllm', 'deepspeed', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
