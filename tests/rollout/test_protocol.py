"""Tool protocol: parsing (fuzzed: never raises; round trips), errors, limits, tool-turn rendering."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ascl_ray.rollout.protocol import (CHATML_TOOL_TEMPLATE, LIMIT_REACHED_TEXT, MALFORMED_CALL_TEXT, PROTOCOLS,
                                       TOOL_FAILURE_TEXT, TOOL_NAME, ToolCall, ToolSession, format_instructions,
                                       make_protocol, render_chat_tool_turn)
from ascl_ray.safety.retrieval import make_retriever
from ascl_ray.safety.spec import load_default_store

STORE = load_default_store()
CATS = STORE.category_names
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Qwen2.5-style ChatML: tool messages become a user turn wrapping <tool_response> (written out here,
# independently of the module's CHATML_TOOL_TEMPLATE, which must agree with it).
QWEN_LIKE = (
    "{%- for m in messages %}"
    "{%- if m.role in ['system', 'user', 'assistant'] %}"
    "{{- '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}"
    "{%- elif m.role == 'tool' %}"
    "{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' + m.content + '\\n</tool_response>' }}"
    "{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
NO_TOOL_RAISES = (
    "{%- for m in messages %}"
    "{%- if m.role not in ['system', 'user', 'assistant'] %}{{ raise_exception('Unknown role: ' + m.role) }}{%- endif %}"
    "{{- '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
NO_TOOL_DROPS = (
    "{%- for m in messages %}{%- if m.role in ['system', 'user', 'assistant'] %}"
    "{{- '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
C = "- [cyber] No malware."
QWEN_TURN = f"<|im_end|>\n<|im_start|>user\n<tool_response>\n{C}\n</tool_response><|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def tokenizer():
    """A real HF tokenizer built offline: tiny byte-level BPE + ChatML special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, show_progress=False,
                                  special_tokens=["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([r.text for _, r in STORE.iter_rules()] * 5 + ["<tool_call> <tool_response>"], trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<|im_end|>",
                                 pad_token="<|endoftext|>")
    hf.chat_template = QWEN_LIKE
    return hf


def _with_template(tok, template):
    tok = tok.__class__(tokenizer_object=tok.backend_tokenizer, unk_token="<unk>", eos_token="<|im_end|>",
                        pad_token="<|endoftext|>")
    tok.chat_template = template
    return tok


@pytest.fixture(scope="module")
def retriever():
    return make_retriever("bm25", STORE)


# ---------------------------------------------------------------- rendering the tool turn
def test_hermes_tool_turn_exact(tokenizer):
    proto = make_protocol("hermes")
    assert proto.render_tool_turn(tokenizer, C) == QWEN_TURN
    assert proto.render_tool_turn(_with_template(tokenizer, CHATML_TOOL_TEMPLATE), C) == QWEN_TURN
    # the spliced text tokenizes with the ChatML markers as single special tokens
    ids = tokenizer(QWEN_TURN, add_special_tokens=False).input_ids
    im_end, im_start = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|im_start|>"])
    assert ids[0] == im_end and ids.count(im_start) == 2 and ids.count(im_end) == 2
    # prompt + model text + tool turn == the template's rendering of the same conversation
    call = proto.format_call({"query": "malware"})
    full = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "assistant", "content": call},
                                          {"role": "tool", "content": C}], tokenize=False, add_generation_prompt=True)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                           add_generation_prompt=True)
    assert prompt + call + proto.render_tool_turn(tokenizer, C) == full


@pytest.mark.parametrize("template", [NO_TOOL_RAISES, NO_TOOL_DROPS])
def test_fallback_without_tool_role(tokenizer, template):
    tok = _with_template(tokenizer, template)
    with pytest.raises(Exception):
        if template is NO_TOOL_RAISES:
            tok.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)
        else:
            raise RuntimeError("the drop template renders silently; the content check catches it")
    assert make_protocol("hermes").render_tool_turn(tok, C) == QWEN_TURN  # user turn + <tool_response>
    plain = make_protocol("plain_tags", inline=False).render_tool_turn(tok, C)
    assert plain == f"<|im_end|>\n<|im_start|>user\n<rules>\n{C}\n</rules><|im_end|>\n<|im_start|>assistant\n"


def test_plain_tags_turns(tokenizer):
    assert make_protocol("plain_tags").render_tool_turn(None, C) == f"<rules>\n{C}\n</rules>\n"
    assert make_protocol("plain_tags", inline=False).render_tool_turn(tokenizer, C) == QWEN_TURN


def test_template_dropping_assistant_is_an_error(tokenizer):
    tok = _with_template(tokenizer, "{% for m in messages %}{% if m.role == 'user' %}{{ m.content }}{% endif %}"
                                    "{% endfor %}")
    with pytest.raises(ValueError, match="dropped the assistant message"):
        render_chat_tool_turn(tok, C)


# ---------------------------------------------------------------- parsing
CALL_PIECES = ["<tool_call>", "</tool_call>", "<tool_call", "tool_call>", "<rules_query>", "</rules_query>",
               "<rules>", "</rules>", '{"name": "retrieve_safety_rules", "arguments": {"query": "x"}}',
               '{"name": ', '"arguments": ', "{", "}", "[", "]", '"', "\\", "null", "1e999", "9" * 50,
               "Final answer:", "</think>", "\u202e", "\U0001f4a3", "\x00", "\ud7ff", '{"query": 1}']
messy = st.lists(st.one_of(st.sampled_from(CALL_PIECES), st.text(max_size=20)), max_size=30).map("".join)
json_values = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(),
                           lambda kids: st.lists(kids, max_size=8) | st.dictionaries(st.text(max_size=8), kids, max_size=8),
                           max_leaves=200)


def _check_parse_result(proto, text, out, retriever):
    assert out is None or isinstance(out, ToolCall)
    if out is None:
        assert proto.open_tag not in text and proto.close_tag not in text
        return
    assert out.error is None or (isinstance(out.error, str) and out.error)
    assert "internal parse error" not in (out.error or "")  # every input is handled by the real logic
    if out.ok:
        assert out.name == TOOL_NAME and set(out.arguments) <= {"query", "category"}
        assert text[out.span[0]:out.span[1]] == out.raw
    content = proto.execute(out, retriever)
    assert isinstance(content, str) and content
    if not out.ok:
        assert content == MALFORMED_CALL_TEXT.format(error=out.error)


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
@FUZZ
@given(text=st.one_of(st.text(), messy))
def test_parse_never_raises_on_any_text(name, text, retriever):
    for proto in (make_protocol(name), make_protocol(name, categories=CATS, answer_marker="Final answer:")):
        _check_parse_result(proto, text, proto.parse(text), retriever)


arg_values = st.one_of(st.none(), st.text(max_size=20), st.integers(), st.lists(st.integers(), max_size=2),
                       st.sampled_from(CATS + ["Cyber", " self_harm ", "bio", "", "  "]))
arg_dicts = st.dictionaries(st.sampled_from(["query", "category", "topic"]), arg_values, max_size=3)


def _expected_ok(args):
    """Independent oracle for the argument rules (categories list = CATS)."""
    if not isinstance(args, dict) or set(args) - {"query", "category"}:
        return False
    q, c = args.get("query"), args.get("category")
    if not isinstance(q, (str, type(None))) or not isinstance(c, (str, type(None))):
        return False
    if len(q or "") > 1000 or not ((q or "").strip() or (c or "").strip()):
        return False
    return not (c or "").strip() or c.strip().lower() in CATS


@settings(max_examples=150, deadline=None)
@given(value=st.one_of(arg_dicts, json_values), wrap=st.sampled_from(["args", "args_str", "whole"]))
def test_parse_arbitrary_json(value, wrap, retriever):
    proto = make_protocol("hermes", categories=CATS, max_call_chars=10**6)
    args = json.dumps(value) if wrap == "args_str" else value
    obj = {"name": TOOL_NAME, "arguments": args} if wrap != "whole" else value
    text = "<tool_call>" + json.dumps(obj) + "</tool_call>"
    out = proto.parse(text)
    _check_parse_result(proto, text, out, retriever)
    assert out.ok == (wrap != "whole" and _expected_ok(value)), (value, out.error)


def test_huge_and_deep_inputs_never_raise():
    proto = make_protocol("hermes", max_call_chars=10**7)
    for body in ["[" * 200000 + "]" * 200000, '{"a":' * 50000 + "1" + "}" * 50000, "1" * 100000,
                 json.dumps({"name": TOOL_NAME, "arguments": {"query": "q" * 10**6}})]:
        out = proto.parse(f"<tool_call>{body}</tool_call>")
        assert out is not None and out.error and "internal parse error" not in out.error
    assert "too long" in make_protocol("hermes").parse("<tool_call>" + "x" * 5000 + "</tool_call>").error
    assert proto.parse(None).error == "segment is not text (NoneType)"
    assert proto.parse(b"<tool_call>").error == "segment is not text (bytes)"


no_tags = st.text(max_size=200).filter(lambda s: "<tool_call>" not in s and "</tool_call>" not in s)
tricky = st.lists(st.one_of(st.text(max_size=10), st.sampled_from(CALL_PIECES)), max_size=12).map("".join)


@FUZZ
@given(prefix=no_tags, query=st.one_of(st.none(), st.text(max_size=200), tricky),
       category=st.one_of(st.none(), st.text(min_size=1, max_size=40).filter(str.strip)))
def test_hermes_round_trip(prefix, query, category):
    args = {k: v for k, v in (("query", query), ("category", category)) if v is not None}
    if not ((query or "").strip() or category):
        return
    proto = make_protocol("hermes")
    text = prefix + proto.format_call(args)
    out = proto.parse(text)
    assert out.ok, out.error
    assert out.arguments == args and out.span[1] == len(text)


@FUZZ
@given(query=st.text(max_size=100), category=st.sampled_from(CATS), case=st.sampled_from([str.upper, str.title, str]))
def test_hermes_round_trip_with_category_list(query, category, case):
    proto = make_protocol("hermes", categories=CATS)
    out = proto.parse(proto.format_call({"query": query, "category": case(category)}))
    assert out.ok and out.arguments == {"query": query, "category": category}


plain_query = st.text(max_size=200).map(str.strip).filter(lambda s: s and "<rules_query>" not in s
                                                          and "</rules_query>" not in s)


@FUZZ
@given(prefix=st.text(max_size=50).filter(lambda s: "rules_query>" not in s), query=plain_query,
       category=st.one_of(st.none(), st.sampled_from(CATS)))
def test_plain_tags_round_trip(prefix, query, category):
    proto = make_protocol("plain_tags", categories=CATS if category else None)
    args = {"query": query, **({"category": category} if category else {})}
    out = proto.parse(prefix + proto.format_call(args))
    assert out.ok, out.error
    assert out.arguments == args
    assert make_protocol("plain_tags", categories=CATS).parse(proto.format_call({"category": "cyber"})).arguments \
        == {"category": "cyber"}


def test_no_call_is_none():
    for name in PROTOCOLS:
        proto = make_protocol(name)
        assert proto.parse("The answer is 42.") is None
        assert proto.parse("") is None
    assert make_protocol("plain_tags").parse("<rules>\nx\n</rules> answer") is None


def _call(args):
    return "<tool_call>" + json.dumps({"name": TOOL_NAME, "arguments": args}) + "</tool_call>"


HERMES_BAD = [
    ("<tool_call>{'name': 'x'}</tool_call>", "invalid JSON (Expecting property name enclosed in double quotes"),
    ("<tool_call>{\"name\": \"retrieve_safety_rules\", </tool_call>", "invalid JSON"),
    ("<tool_call>  </tool_call>", "empty tool call"),
    ('<tool_call>["retrieve_safety_rules"]</tool_call>', "must be a JSON object, got array"),
    ('<tool_call>"hi"</tool_call>', "must be a JSON object, got string"),
    ('<tool_call>{"arguments": {"query": "q"}}</tool_call>', "missing field 'name'"),
    ('<tool_call>{"name": 7, "arguments": {}}</tool_call>', "field 'name' must be a string, got number"),
    ('<tool_call>{"name": "web_search", "arguments": {"query": "q"}}</tool_call>', "unknown tool name 'web_search'"),
    ('<tool_call>{"name": "retrieve_safety_rules"}</tool_call>', "missing field 'arguments'"),
    ('<tool_call>{"name": "retrieve_safety_rules", "arguments": [1]}</tool_call>', "'arguments' must be a JSON object, got array"),
    ('<tool_call>{"name": "retrieve_safety_rules", "arguments": "nope"}</tool_call>', "'arguments' is a string that is not a JSON object"),
    (_call({}), "missing argument 'query'"),
    (_call({"query": "  ", "category": None}), "missing argument 'query'"),
    (_call({"query": 5}), "argument 'query' must be a string, got number"),
    (_call({"query": "q", "category": ["cyber"]}), "argument 'category' must be a string or null, got array"),
    (_call({"query": "q", "topic": "x"}), "unexpected argument(s) 'topic'; allowed: 'query', 'category'"),
    (_call({"query": "q", "category": "bio"}), "unknown category 'bio'; valid categories: violence_weapons, cyber"),
    (_call({"query": "q" * 1001}), "argument 'query' too long (1001 chars > 1000)"),
    ("Final answer: no. " + _call({"query": "q"}), "tool call after the final answer marker 'Final answer:'"),
    ('thinking <tool_call>{"name": "retrieve_safety_rules", "argu', "opening tag <tool_call> has no closing </tool_call>"),
    ("so </tool_call>", "closing tag </tool_call> without an opening <tool_call>"),
    ("</tool_call> <tool_call>{}</tool_call>", "closing tag </tool_call> without an opening"),
    ("<tool_call><tool_call>" + _call({"query": "q"})[11:], "nested <tool_call> tag"),
]


@pytest.mark.parametrize("text, message", HERMES_BAD)
def test_hermes_malformed_errors_name_the_problem(text, message, retriever):
    proto = make_protocol("hermes", categories=CATS, answer_marker="Final answer:")
    out = proto.parse(text)
    assert out is not None and not out.ok
    assert message in out.error
    assert proto.execute(out, retriever) == MALFORMED_CALL_TEXT.format(error=out.error)


@pytest.mark.parametrize("text, message", [
    ("<rules_query>   </rules_query>", "empty query"),
    ("<rules_query>cyber", "opening tag <rules_query> has no closing"),
    ("x</rules_query>", "closing tag </rules_query> without an opening"),
    ("<rules_query>a<rules_query>b</rules_query>", "nested <rules_query>"),
    ("<rules_query>" + "q" * 1001 + "</rules_query>", "argument 'query' too long"),
])
def test_plain_tags_malformed(text, message):
    out = make_protocol("plain_tags", categories=CATS).parse(text)
    assert out is not None and not out.ok and message in out.error


def test_lenient_forms_accepted():
    proto = make_protocol("hermes", categories=CATS)
    s = '<tool_call>\n{"name": "retrieve_safety_rules", "arguments": "{\\"query\\": \\"q\\"}"}\n</tool_call>'
    assert proto.parse(s).arguments == {"query": "q"}  # OpenAI-style string-encoded arguments
    out = proto.parse(_call({"category": "Self Harm", "query": None}))
    assert out.ok and out.arguments == {"category": "self_harm"}
    out = make_protocol("plain_tags", categories=CATS).parse("<rules_query>Fraud Deception: fake invoices</rules_query>")
    assert out.arguments == {"query": "fake invoices", "category": "fraud_deception"}
    out = make_protocol("plain_tags", categories=CATS).parse("<rules_query>note: cyber</rules_query>")
    assert out.arguments == {"query": "note: cyber"}


# ---------------------------------------------------------------- executing, limits, session
def test_execute_and_limits(retriever):
    proto = make_protocol("hermes", categories=CATS, max_tool_calls=1)
    call = proto.parse(_call({"query": "pipe bomb"}))
    assert proto.execute(call, retriever).startswith("- [violence_weapons] No help making weapons")
    assert proto.execute(call, retriever, call_index=1) == LIMIT_REACHED_TEXT
    bad = proto.parse("<tool_call>oops</tool_call>")
    assert proto.execute(bad, retriever, call_index=1) == LIMIT_REACHED_TEXT  # the limit wins
    assert make_protocol("hermes", max_tool_calls=0).execute(call, retriever) == LIMIT_REACHED_TEXT
    assert make_protocol("hermes", max_tool_calls=2).execute(call, retriever, call_index=1) != LIMIT_REACHED_TEXT
    by_cat = make_retriever("by_category", STORE)
    err = proto.execute(proto.parse(_call({"query": "bombs"})), by_cat)
    assert err.startswith("Error: invalid retrieve_safety_rules call: by_category retrieval needs argument 'category'")
    short = make_protocol("hermes", max_response_chars=30).execute(call, make_retriever("whole_spec", STORE))
    assert len(short) == 30 and short.endswith(" [...]")

    class Broken:
        def retrieve(self, query, category):
            raise RuntimeError("disk on fire")

    assert proto.execute(call, Broken()) == TOOL_FAILURE_TEXT
    assert proto.run(call, Broken()).status == "failed"
    assert proto.execute(None, retriever).startswith("Error: invalid retrieve_safety_rules call: no tool call")


def test_session_records(retriever):
    s = ToolSession(make_protocol("hermes", categories=CATS, max_tool_calls=1), retriever)
    assert s.step("Answer without tools.") is None
    assert s.record() == {"consulted": False, "n_calls": 0, "categories": [], "malformed_call": False}
    first = s.step("hmm " + _call({"query": "pipe bomb", "category": "violence_weapons"}))
    assert first.status == "ok" and "violence_weapons" in first.content
    second = s.step(_call({"query": "again"}))
    assert second.status == "limit" and second.content == LIMIT_REACHED_TEXT
    assert s.record() == {"consulted": True, "n_calls": 2, "categories": ["violence_weapons"], "malformed_call": False}
    s2 = ToolSession(make_protocol("hermes", categories=CATS), retriever)
    assert s2.step("<tool_call>{bad}</tool_call>").status == "malformed"
    assert s2.record()["malformed_call"] and s2.record()["consulted"]


def test_protocol_config_and_instructions():
    h, p = make_protocol(), make_protocol("plain_tags")
    assert h.name == "hermes" and h.stop_strings == ["</tool_call>"]
    assert p.stop_strings == ["</rules_query>"] and p.inline and not h.inline
    with pytest.raises(ValueError, match="name='xml'"):
        make_protocol("xml")
    with pytest.raises(ValueError, match="max_tool_calls=-1"):
        make_protocol("hermes", max_tool_calls=-1)
    text = format_instructions("hermes", CATS)
    assert h.format_call({"query": "...", "category": "..."}) in text
    assert "Categories: violence_weapons, cyber" in text and "At most 1 lookup." in text
    assert "At most 2 lookups." in format_instructions(make_protocol("hermes", max_tool_calls=2), None)
    assert "<rules_query>" in format_instructions("plain_tags", CATS)
    assert "after </think>" in make_protocol("hermes", answer_marker="</think>").format_instructions()
    assert '"category" is optional' in text
    strict = make_protocol("hermes", categories=CATS, require_category=True)
    assert '"category" is required' in strict.format_instructions(CATS)
    assert strict.parse(_call({"query": "bombs"})).error == "missing argument 'category'"
    assert strict.parse(_call({"query": "bombs", "category": "cyber"})).ok
    assert make_protocol("plain_tags", categories=CATS, require_category=True).parse(
        "<rules_query>cyber: x</rules_query>").ok
    schema = make_protocol("hermes", categories=CATS).tool_schema()
    assert schema["function"]["name"] == TOOL_NAME
    assert schema["function"]["parameters"]["properties"]["category"]["enum"] == CATS
    with pytest.raises(ValueError, match="cannot encode"):
        p.format_call({"query": "a </rules_query> b"})
