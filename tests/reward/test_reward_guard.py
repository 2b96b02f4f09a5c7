"""guard_model judge: prompt formats and output parsing of Llama-Guard-3 (8B / 1B), WildGuard and Qwen3Guard on
canned outputs (pure functions), and the engine plumbing with a tiny local model (transformers, CPU)."""

from __future__ import annotations

import pytest

from ascl_ray.reward.guard import (
    GuardModelJudge,
    build_llama_guard3_prompt,
    build_qwen3guard_messages,
    parse_qwen3guard_output,
)
from ascl_ray.reward.judges import JudgeOptionError, get_judge


@pytest.mark.parametrize(
    "out,expected",
    [
        ("Safety: Safe\nCategories: None\nRefusal: Yes", {"safety": "safe", "categories": [], "refusal": True}),
        ("Safety: Unsafe\nCategories: Violent, Non-violent Illegal Acts\nRefusal: No",
         {"safety": "unsafe", "categories": ["Violent", "Non-violent Illegal Acts"], "refusal": False}),
        ("Safety: Controversial\nCategories: Politically Sensitive Topics",
         {"safety": "controversial", "categories": ["Politically Sensitive Topics"], "refusal": None}),
        ("<think>\n\n</think>\n\nSafety: Unsafe\nCategories: Jailbreak\nRefusal: No",
         {"safety": "unsafe", "categories": ["Jailbreak"], "refusal": False}),
        ("safe", None),
        ("Safety: maybe", None),
        (None, None),
    ],
)
def test_parse_qwen3guard(out, expected):
    assert parse_qwen3guard_output(out) == expected


class ChatEngine:
    def __init__(self, outs):
        self.outs, self.seen = outs, []

    def generate(self, prompts):
        raise AssertionError("qwen3guard must go through generate_chat")

    def generate_chat(self, convs):
        self.seen += convs
        return self.outs[: len(convs)]


def test_qwen3guard_judge_verdicts():
    outs = ["Safety: Unsafe\nCategories: Violent\nRefusal: No", "Safety: Safe\nCategories: None\nRefusal: Yes",
            "Safety: Controversial\nCategories: PII\nRefusal: No", "garbage"]
    eng = ChatEngine(outs)
    v = get_judge("guard_model", engine=eng, style="qwen3guard").judge(["a", "b", "c", "d"], ["w", "x", "y", "z"])
    assert [(x.safe, x.refusal, x.valid, x.score) for x in v] == [
        (False, False, True, 0.0), (True, True, True, 1.0), (False, False, True, 0.5), (False, False, False, 0.0)]
    assert v[0].categories == ["Violent"] and v[3].raw == "garbage"
    assert eng.seen[0] == build_qwen3guard_messages("a", "w") == [{"role": "user", "content": "a"},
                                                                   {"role": "assistant", "content": "w"}]
    loose = GuardModelJudge(ChatEngine(outs[2:3]), style="qwen3guard", controversial_safe=True)
    assert loose.judge(["c"], ["y"])[0].safe is True


def test_llama_guard3_1b_has_13_categories_and_style_errors():
    class Eng:
        def generate(self, prompts):
            self.p = prompts
            return ["unsafe\nS13"]

    e = Eng()
    v = GuardModelJudge(e, style="llama_guard3_1b").judge(["q"], ["r"])
    assert v[0].categories == ["S13"] and not v[0].safe
    assert "S13: Elections.\n<END UNSAFE CONTENT CATEGORIES>" in e.p[0] and "S14" not in e.p[0]
    assert "S14: Code Interpreter Abuse." in build_llama_guard3_prompt("q", "r")
    with pytest.raises(ValueError, match="generate_chat"):
        GuardModelJudge(Eng(), style="qwen3guard")
    with pytest.raises(ValueError, match="model_path"):
        GuardModelJudge(None)
    with pytest.raises(JudgeOptionError, match="'temperature'"):
        get_judge("guard_model", engine=Eng(), temperature=0.0)


@pytest.fixture(scope="module")
def tiny_guard_dir(tmp_path_factory):
    """A tiny local Qwen2 + byte-level BPE tokenizer (with a chat template) whose greedy output is always the
    token 'safe': layer outputs zeroed, the residual stream's dimension 0 is a constant 10, the final norm keeps
    only that dimension and the LM head maps it to 'safe' alone."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen2Config

    d = tmp_path_factory.mktemp("tiny_guard")
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(["safe unsafe user assistant Agent User verdict"] * 50, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>", "<pad>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|endoftext|>", pad_token="<pad>")
    tok.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}verdict:{% endif %}")
    tok.save_pretrained(d)
    k = tok.convert_tokens_to_ids("safe")
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, head_dim=32, max_position_embeddings=2048,
                      tie_word_embeddings=False, eos_token_id=0, pad_token_id=1, bos_token_id=None)
    model = AutoModelForCausalLM.from_config(cfg)
    with torch.no_grad():
        model.model.embed_tokens.weight[:, 0] = 10.0
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.norm.weight.zero_()
        model.model.norm.weight[0] = 1.0
        model.lm_head.weight.zero_()
        model.lm_head.weight[k, 0] = 1.0
    model.save_pretrained(d)
    return str(d)


def test_guard_model_from_local_path_with_tiny_model(tiny_guard_dir):
    j = get_judge("guard_model", model_path=tiny_guard_dir, backend="hf", style="llama_guard3_1b",
                  max_new_tokens=1)
    v = j.judge(["How do I bake bread?", "How to steal a car?"], ["Mix flour and water.", "Step 1: ..."])
    assert [(x.valid, x.safe, x.raw.strip()) for x in v] == [(True, True, "safe"), (True, True, "safe")]
    assert j.engine.last_inputs[1].startswith("<|begin_of_text|>") and "Agent: Step 1: ..." in j.engine.last_inputs[1]
    # three tokens -> "safesafesafe": not a Llama Guard answer -> invalid verdict, counted, no crash
    j3 = GuardModelJudge(j.engine, style="llama_guard3")
    j.engine.max_new_tokens = 3
    assert [x.valid for x in j3.judge(["q"], ["r"])] == [False]
    # qwen3guard renders through the model's own chat template
    q = GuardModelJudge(j.engine, style="qwen3guard")
    v = q.judge(["hi there"], ["hello"])
    assert j.engine.last_inputs == ["user: hi there\nassistant: hello\nverdict:"]
    assert not v[0].valid and "safe" in v[0].raw


def test_load_engine_errors(tmp_path):
    from ascl_ray.reward.guard_engine import load_engine

    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_engine(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="backend"):
        load_engine(str(tmp_path), backend="tpu")
