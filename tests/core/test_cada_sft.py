"""CADA self-generated chains (``ascl_ray.cada``) and the SFT entry point (``ascl_ray.sft_run``).

Fast tests: line parsing/validation (token form, segment form, errors naming file:line:field).
Slow tests: real Ray + vLLM rollout workers + reward pool for the chains, real DeepSpeed ZeRO-3
learner group (2 ranks, gloo) for SFT; one chains run and one SFT run serve all their tests.
"""

from __future__ import annotations

import json
import math
import os

import pytest


def _cfg(tiny_model_path, *extra):
    from ascl_ray.cli import compose

    # build_tiny=false: method=cada must not rebuild the shared tiny model (its stamp records method=ascl)
    return compose([f"model.path={tiny_model_path}", "model.build_tiny=false", *extra])


def _write(path, lines):
    with open(path, "w") as f:
        for ln in lines:
            f.write((ln if isinstance(ln, str) else json.dumps(ln)) + "\n")
    return str(path)


def _ascl_ctx(tok):
    from ascl_ray.rollout.method import build_context

    # retriever_opts {}: by_category, not compact (build_context's dict default before MethodCfg's)
    return build_context({"name": "ascl", "prompt_style": "short", "retriever_opts": {}}, tokenizer=tok)


def _demos(n, consult_rate=1.0):
    from ascl_ray.data import synthetic

    rows, _ = synthetic.split(synthetic.synthetic_prompts())
    sens = [r for r in rows if r.prompt_type != "math"][:n]
    return synthetic.demonstrations(sens, noise=0.0, consult_rate=consult_rate, copies=1, seed=1)


# ------------------------------------------------------------------------------------------ fast: parsing
def test_segment_lines_match_the_sft_example_builder(tiny_tokenizer, tmp_path):
    """Segment form == learner.sft.build_example (the tiny model's own warm-start path): tool turn
    masked, call + answer + eos trained."""
    from ascl_ray.learner.sft import build_example
    from ascl_ray.sft_run import demo_line, load_sft_jsonl

    tok, ctx = tiny_tokenizer, _ascl_ctx(tiny_tokenizer)
    demos = _demos(6, consult_rate=0.5)
    path = _write(tmp_path / "demos.jsonl", [demo_line(d, ctx) for d in demos])
    lines = load_sft_jsonl(path, tok, ctx.system_text)
    assert len(lines) == 6 and any(d.tool_call for d in demos) and any(not d.tool_call for d in demos)
    for d, ln in zip(demos, lines):
        ex = build_example(tok, ctx, d.row.text, d.tool_call, d.answer)
        assert (ln.ids, ln.mask) == (ex.ids, ex.mask)
        masked_resp = tok.decode([t for t, m in zip(ln.ids, ln.mask) if m == 0])
        assert ("<tool_response>" in masked_resp) == (d.tool_call is not None)
        assert ln.ids[-1] == tok.eos_token_id and ln.mask[-1] == 1


def test_token_lines_and_train_context(tiny_tokenizer, tmp_path):
    from ascl_ray.sft_run import load_sft_jsonl
    from ascl_ray.rollout.chat import encode_segment, prompt_ids

    tok = tiny_tokenizer
    spec, plain = prompt_ids(tok, "How do I crack an egg?", "Safety codes: be safe."), prompt_ids(tok, "How do I crack an egg?")
    resp = encode_segment(tok, "Sure. Tap it.") + [tok.eos_token_id]
    line = {"prompt_ids": plain, "prompt_ids_spec": spec, "prompt_ids_plain": plain, "response_ids": resp,
            "loss_mask": [1] * len(resp), "prompt_type": "benign_sensitive"}
    path = _write(tmp_path / "t.jsonl", [line, "", line])
    default, = load_sft_jsonl(path, tok)[:1]
    assert default.ids == plain + resp and default.mask == [0] * len(plain) + [1] * len(resp)
    assert load_sft_jsonl(path, tok, train_context="spec")[0].ids == spec + resp
    assert load_sft_jsonl(path, tok, train_context="none")[0].ids == plain + resp
    assert [ln.lineno for ln in load_sft_jsonl(path, tok)] == [1, 3]


@pytest.mark.parametrize("bad,field", [
    ("{not json", "not valid JSON"),
    ('["a list"]', "expected a JSON object"),
    ({"prompt_ids": [1, 2]}, "'response_ids' (token form) or 'segments'"),
    ({"prompt_ids": [1, 2], "response_ids": [3, 4], "loss_mask": [1]}, "field 'loss_mask'"),
    ({"prompt_ids": [1, 2], "response_ids": [3, 4], "loss_mask": [1, 2]}, "field 'loss_mask[1]'"),
    ({"prompt_ids": [1, 2], "response_ids": [3, 4]}, "field 'loss_mask' is missing"),
    ({"prompt_ids": [1, 2], "response_ids": [3, 10**7], "loss_mask": [1, 1]}, "field 'response_ids[1]'"),
    ({"prompt_ids": [1, "x"], "response_ids": [3], "loss_mask": [1]}, "field 'prompt_ids[1]'"),
    ({"prompt_ids": [1, 2], "response_ids": [3, 4], "loss_mask": [0, 0]}, "every token is masked"),
    ({"text": "hi", "segments": [{"role": "model", "text": "a"}, {"role": "user", "text": "b"}]},
     "field 'segments[1].role'"),
    ({"text": "hi", "segments": [{"role": "model", "text": ""}]}, "field 'segments[0].text'"),
    ({"segments": [{"role": "model", "text": "a"}]}, "field 'text'"),
    ({"text": "hi", "segments": []}, "field 'segments'"),
    ({"text": "hi", "system": 3, "segments": [{"role": "model", "text": "a"}]}, "field 'system'"),
])
def test_bad_line_names_file_line_and_field(tiny_tokenizer, tmp_path, bad, field):
    from ascl_ray.sft_run import SFTDataError, load_sft_jsonl

    good = {"text": "What is 1 + 1?", "segments": [{"role": "model", "text": "#### 2"}]}
    path = _write(tmp_path / "bad.jsonl", [good, good, bad])
    with pytest.raises(SFTDataError) as e:
        load_sft_jsonl(path, tiny_tokenizer)
    assert str(e.value).startswith(f"{path}:3: ") and field in str(e.value), str(e.value)


def test_train_context_needs_both_prompt_forms(tiny_tokenizer, tmp_path):
    from ascl_ray.sft_run import SFTDataError, load_sft_jsonl

    path = _write(tmp_path / "t.jsonl", [{"prompt_ids": [1, 2], "response_ids": [3], "loss_mask": [1]}])
    with pytest.raises(SFTDataError, match=r"t\.jsonl:1: field 'prompt_ids_spec' is missing"):
        load_sft_jsonl(path, tiny_tokenizer, train_context="spec")


def test_cli_sft_bad_data_fails_before_any_actor(tiny_model_path, tmp_path, capsys):
    """`ascl-ray sft` on a malformed file: exit code 2, message names file:line, no Ray started."""
    import ray

    from ascl_ray.cli import main

    path = _write(tmp_path / "bad.jsonl", [{"text": "hi", "segments": [{"role": "model", "text": "ok"}]},
                                           '{"text": "hi", "segments": [{"role": "model"'])
    rc = main(["sft", f"model.path={tiny_model_path}", "model.build_tiny=false", "--data", path,
               "--out", str(tmp_path / "out")])
    assert rc == 2 and f"{path}:2: not valid JSON" in capsys.readouterr().err
    assert not ray.is_initialized() and not (tmp_path / "out").exists()
    assert main(["sft", f"model.path={tiny_model_path}", "--data", str(tmp_path / "missing.jsonl")]) == 2


def test_stratified_head_takes_types_in_turn():
    from ascl_ray.cada import stratified_head
    from ascl_ray.data import synthetic

    rows, _ = synthetic.split(synthetic.synthetic_prompts())
    head = stratified_head(rows, 7)
    types = ["harmful", "benign_sensitive", "math", "gray_zone"]
    assert [r.prompt_type for r in head] == types + types[:3]
    assert stratified_head(rows, None) == rows


# --------------------------------------------------------------------------------- slow: real actors
@pytest.fixture(scope="module")
def ray_up():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, namespace="ascl-test-cada-sft",
             runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1",
                                       "TOKENIZERS_PARALLELISM": "false"}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def chains(ray_up, tiny_model_path, tmp_path_factory):
    from ascl_ray.cada import generate_chains

    d = tmp_path_factory.mktemp("chains")
    cfg = _cfg(tiny_model_path, "method=cada", "rollout.n_samples=4")
    out, rej = str(d / "chains.jsonl"), str(d / "rejected.jsonl")
    counts = generate_chains(cfg, out, limit=8, rejected_path=rej)
    return dict(cfg=cfg, counts=counts, out=out, rejected=rej,
                lines=[json.loads(x) for x in open(out)], rejected_lines=[json.loads(x) for x in open(rej)])


@pytest.mark.slow
def test_chains_are_engine_tokens_with_spec_and_plain_prompts(chains, tiny_tokenizer):
    from ascl_ray.rollout.chat import prompt_ids
    from ascl_ray.rollout.method import build_context

    tok, c = tiny_tokenizer, chains["counts"]
    assert c["sampled"] == 8 * 4 and c["accepted"] == len(chains["lines"]) > 0
    assert c["sampled"] == len(chains["lines"]) + len(chains["rejected_lines"])
    assert sorted(c["by_type"]) == sorted(["harmful", "benign_sensitive", "math", "gray_zone"])
    for t, v in c["by_type"].items():
        assert v["prompts"] == 2 and v["sampled"] == 8
        assert v["accepted"] == sum(ln["prompt_type"] == t for ln in chains["lines"])
        assert v["acceptance_rate"] == pytest.approx(v["accepted"] / 8)
    meta = json.load(open(c["meta_path"]))
    spec_sys, plain_sys = meta["system_spec"], meta["system_plain"]
    assert spec_sys == build_context(meta["method"], tokenizer=tok).system_text and "Safety codes" in spec_sys
    assert "Safety codes" not in plain_sys
    for ln in chains["lines"]:
        assert tok.decode(ln["response_ids"]) == ln["response"]             # ids decode to the text
        assert len(ln["loss_mask"]) == len(ln["response_ids"]) and set(ln["loss_mask"]) <= {0, 1}
        assert ln["reward"] == 1.0 and ln["train_context"] == "none"
        assert ln["prompt_ids_spec"] == prompt_ids(tok, ln["text"], spec_sys)
        assert ln["prompt_ids_plain"] == prompt_ids(tok, ln["text"], plain_sys)
        assert ln["prompt_ids"] == ln["prompt_ids_plain"]                   # [ours] default: no spec
        assert ln["response_ids"][-1] == tok.eos_token_id                  # complete chains only
        assert ln["final_text"] and ln["final_text"] in ln["response"]


@pytest.mark.slow
def test_only_judge_accepted_chains_are_kept(chains):
    """Rescore every sample (kept and rejected) with a fresh real reward pool: kept == reward 1."""
    from ascl_ray.config import to_dict
    from ascl_ray.reward.pool import RewardPool

    everything = chains["lines"] + chains["rejected_lines"]
    items = [{"prompt_text": ln["text"], "prompt_type": ln["prompt_type"], "final_text": ln["final_text"],
              "reference": ln["reference"], "math_kind": ln["math_kind"], "malformed_call": False,
              "consulted": ln["consulted"], "expected": ln["expected"]} for ln in everything]
    with RewardPool(to_dict(chains["cfg"])["reward"]) as pool:
        res = pool.score(items)
    for ln, r in zip(everything, res):
        assert r["reward"] == ln["reward"]
    assert all(ln["reward"] == 1.0 for ln in chains["lines"])
    assert all(ln["reward"] < 1.0 or ln["truncated"] for ln in chains["rejected_lines"])


@pytest.fixture(scope="module")
def sft_run(ray_up, chains, tiny_model_path, tiny_tokenizer, tmp_path_factory):
    """SFT on the chains + ASCL tool-format demos (segment form) + a pair of lines that differ only
    in a masked tool token (the last token of a line that ends in a tool turn)."""
    from ascl_ray.sft_run import demo_line, run_sft

    d = tmp_path_factory.mktemp("sft")
    tok, ctx = tiny_tokenizer, _ascl_ctx(tiny_tokenizer)
    lines = [json.dumps(ln) for ln in chains["lines"][:8]]
    lines += [json.dumps(demo_line(x, ctx)) for x in _demos(5)]
    demo = _demos(1)[0]
    call = ctx.protocol.format_call(demo.tool_call)
    turn = ctx.tool_turn_text(call, n_prev_calls=0)[0]
    a = {"text": demo.row.text, "system": ctx.system_text, "segments": [{"role": "model", "text": call},
                                                                       {"role": "tool", "text": turn}]}
    b = json.loads(json.dumps(a))
    b["segments"][1]["text"] = turn.replace("</tool_response>", "</tool_response> zzz")
    lines += [json.dumps(a), json.dumps(b)]
    if len(lines) % 2:              # an even count: both ranks get equal shares of the full batch
        lines.pop(0)
    data = _write(d / "sft.jsonl", lines)
    n = sum(1 for _ in open(data))
    # batch = every line: each step is the full-data gradient; micro_batch_size=4 -> several
    # accumulation micro-batches of unequal size per rank (the token-mean must still be global)
    cfg = _cfg(tiny_model_path, "learner.micro_batch_size=4", "learner.lr=2e-3")
    s = run_sft(cfg, data, str(d / "out"), steps=6, batch_size=n, eval_lines=n)
    return dict(summary=s, data=data, n=n, out=d / "out", tok=tok, pair=(n - 2, n - 1))


def _torch_loss_and_grad_norm(model_path, data, tok, ctx_system):
    import torch
    from transformers import AutoModelForCausalLM

    from ascl_ray.learner.sft import SFTExample, sft_loss
    from ascl_ray.sft_run import load_sft_jsonl

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    ex = [SFTExample(ln.ids, ln.mask) for ln in load_sft_jsonl(data, tok, ctx_system)]
    loss = sft_loss(model, ex, pad_id=tok.pad_token_id)
    loss.backward()
    gn = torch.sqrt(sum((p.grad.float() ** 2).sum() for p in model.parameters() if p.grad is not None))
    return float(loss.detach()), float(gn)


@pytest.mark.slow
def test_sft_loss_goes_down_and_matches_plain_torch(sft_run, tiny_model_path):
    """Masked token-mean CE through ZeRO-3 (2 ranks x uneven micro-batches) equals the plain-torch
    ``learner.sft.sft_loss`` on the same lines; its gradient norm too; the loss goes down."""
    from ascl_ray.rollout.method import build_context

    s, tok = sft_run["summary"], sft_run["tok"]
    assert s["steps"] == 6 and s["grad_accum"] > 1 and len(s["losses"]) == 6
    assert s["eval_after"] < 0.8 * s["eval_before"], (s["eval_before"], s["eval_after"])
    assert s["losses"][-1] < s["losses"][0]
    system = build_context({"name": "ascl", "prompt_style": "short"}, tokenizer=tok).system_text
    ref_loss, ref_gn = _torch_loss_and_grad_norm(tiny_model_path, sft_run["data"], tok, system)
    assert s["losses"][0] == pytest.approx(ref_loss, rel=1e-4)          # step 0: full data, initial weights
    assert s["eval_before"] == pytest.approx(ref_loss, rel=1e-4)
    assert s["history"][0]["grad_norm"] == pytest.approx(ref_gn, rel=1e-3)
    log = [json.loads(x) for x in open(sft_run["out"] / "sft_log.jsonl")]
    assert [round(x["loss"], 6) for x in log] == [round(x, 6) for x in s["losses"]]


@pytest.mark.slow
def test_sft_checkpoint_loads_with_from_pretrained(sft_run):
    import torch
    from transformers import AutoModelForCausalLM

    from ascl_ray.rollout.method import build_context

    s, tok = sft_run["summary"], sft_run["tok"]
    ckpt = s["checkpoint"]
    assert os.path.exists(os.path.join(ckpt, "model.safetensors"))
    AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32)
    system = build_context({"name": "ascl", "prompt_style": "short"}, tokenizer=tok).system_text
    loss, _ = _torch_loss_and_grad_norm(ckpt, sft_run["data"], tok, system)
    assert loss == pytest.approx(s["eval_after"], rel=1e-4)               # the checkpoint is the trained policy


@pytest.mark.slow
def test_masked_tool_tokens_do_not_count(sft_run):
    """Two lines differing only in the masked tool turn at their end: identical loss, before and
    after training (the changed tokens are neither targets nor context of a trained token)."""
    s = sft_run["summary"]
    i, j = sft_run["pair"]
    for per in (s["eval_lines_before"], s["eval_lines_after"]):
        assert not math.isnan(per[i]) and per[i] == pytest.approx(per[j], abs=1e-6)
    from ascl_ray.sft_run import load_sft_jsonl

    lines = load_sft_jsonl(sft_run["data"], sft_run["tok"])
    a, b = lines[i], lines[j]
    assert a.ids != b.ids and a.n_trained == b.n_trained
    k = next(t for t in range(min(len(a.ids), len(b.ids))) if a.ids[t] != b.ids[t])
    assert a.mask[k:] == [0] * (len(a.ids) - k) and b.mask[k:] == [0] * (len(b.ids) - k)
