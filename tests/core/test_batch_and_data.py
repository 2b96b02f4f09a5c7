import json

import pytest
import torch

from ascl_ray.batch import PromptRow, Rollout, collate
from ascl_ray.data import synthetic


def _ro(gid, p, r, mask, adv=1.0):
    row = PromptRow("x", "What is 1 + 1?", "math", reference="#### 2", math_kind="gsm8k")
    return Rollout(gid, row, list(range(1, p + 1)), list(range(100, 100 + r)), mask, [-0.5] * r, advantage=adv)


def test_collate_aligns_targets_with_response_tokens():
    a = _ro(0, 3, 4, [1, 0, 0, 1])
    b = _ro(1, 2, 2, [1, 1], adv=-1.0)
    tb = collate([a, b], pad_id=0)
    assert tb.input_ids.shape == (2, 7) and tb.loss_mask.shape == (2, 6)
    # row a: prompt 3 tokens, response at positions 3..6, predicted from positions 2..5
    assert tb.loss_mask[0].tolist() == [0, 0, 1, 0, 0, 1]
    assert tb.input_ids[0, 3:].tolist() == [100, 101, 102, 103]
    assert tb.loss_mask[1].tolist() == [0, 1, 1, 0, 0, 0]
    assert tb.attention_mask[1].tolist() == [1, 1, 1, 1, 0, 0, 0]
    assert tb.advantages.tolist() == [1.0, -1.0]
    assert torch.all(tb.rollout_logprobs[tb.loss_mask == 0][tb.attention_mask[:, 1:][tb.loss_mask == 0] == 0] == 0)


def test_collate_rejects_bad_rollouts():
    bad = _ro(0, 2, 3, [1, 1])
    with pytest.raises(ValueError, match="lengths"):
        collate([bad], 0)
    with pytest.raises(ValueError, match="advantage"):
        collate([_ro(0, 2, 2, [1, 1], adv=None)], 0)
    with pytest.raises(ValueError, match="empty"):
        collate([], 0)


def test_prompt_row_validation_names_field():
    with pytest.raises(ValueError, match="prompt_type"):
        PromptRow("a", "x", "nope")
    with pytest.raises(ValueError, match="text"):
        PromptRow("a", "  ", "harmful")
    with pytest.raises(ValueError, match="reference"):
        PromptRow("a", "What is 1 + 1?", "math")


def test_synthetic_prompts_cover_three_types_and_split_is_stratified():
    rows = synthetic.synthetic_prompts(n_math=30)
    types = {r.prompt_type for r in rows}
    assert types == {"harmful", "benign_sensitive", "math", "gray_zone"}
    assert {r.prompt_type for r in synthetic.synthetic_prompts(n_math=30, gray=False)} == types - {"gray_zone"}
    assert len({r.prompt_id for r in rows}) == len(rows)
    tr, ev = synthetic.split(rows, 0.2)
    assert not {r.prompt_id for r in tr} & {r.prompt_id for r in ev}
    assert {r.prompt_type for r in ev} == types
    for r in rows:
        if r.prompt_type == "math":
            a, op, b = r.text[len("What is "):-1].split(" ")
            assert r.reference == f"#### {eval(f'{a}{op}{b}')}"  # our own generated text, not model text


def test_demonstrations_noise_rate():
    rows = synthetic.synthetic_prompts(n_math=30)
    demos = synthetic.demonstrations(rows, noise=0.3, copies=20)
    harm = [d for d in demos if d.row.prompt_type == "harmful"]
    wrong = sum(d.answer != synthetic.REFUSAL for d in harm) / len(harm)
    assert 0.25 < wrong < 0.35
    # every kind consults in the demos (the cold start teaches the call format everywhere), half of them
    for t in ("harmful", "benign_sensitive", "math", "gray_zone"):
        sub = [d for d in demos if d.row.prompt_type == t]
        assert sum(d.tool_call is not None for d in sub) / len(sub) == pytest.approx(0.5, abs=0.02), t
    assert not any(d.tool_call for d in synthetic.demonstrations(rows, use_tool=False, copies=2))
    clean = synthetic.demonstrations(rows, noise=0.0, copies=2)
    assert all(d.answer == synthetic.REFUSAL for d in clean if d.row.prompt_type == "harmful")


def test_read_prompts_jsonl_errors_name_file_and_line(tmp_path):
    p = tmp_path / "d.jsonl"
    good = {"prompt_id": "a", "text": "How do I kill a python process?", "prompt_type": "benign_sensitive"}
    p.write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(ValueError, match=rf"{p}:2: not valid JSON"):
        synthetic.read_prompts_jsonl(str(p))
    p.write_text(json.dumps(good) + "\n" + json.dumps({"prompt_id": "b", "text": "x"}) + "\n")
    with pytest.raises(ValueError, match=r":2: missing field\(s\) \['prompt_type'\]"):
        synthetic.read_prompts_jsonl(str(p))
    p.write_text(json.dumps({**good, "colour": "red"}) + "\n")
    with pytest.raises(ValueError, match="unknown field"):
        synthetic.read_prompts_jsonl(str(p))
    p.write_text(json.dumps(good) + "\n")
    assert synthetic.read_prompts_jsonl(str(p))[0].prompt_id == "a"


def test_sampler_is_stratified_with_explicit_group_ids():
    from ascl_ray.driver import PromptSampler

    rows = synthetic.synthetic_prompts(n_math=30)
    s = PromptSampler(rows, 8, seed=0)
    seen = []
    for k in range(15):
        batch, gids = s.next_batch()
        assert gids == list(range(8 * k, 8 * k + 8))
        counts = {t: sum(r.prompt_type == t for r in batch) for t in ("harmful", "benign_sensitive", "math", "gray_zone")}
        assert counts == {"harmful": 2, "benign_sensitive": 2, "math": 2, "gray_zone": 2}
        seen += [r.prompt_id for r in batch if r.prompt_type == "math"]
    assert len(seen) == 30 and len(set(seen)) == 30  # epoch-shuffled: no repeats within an epoch of the 30 math rows
