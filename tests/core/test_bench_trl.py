"""The pure parts of ``make bench-trl`` (ascl_ray/bench_trl.py): no TRL install, no model, no subprocess."""

from __future__ import annotations

import math

import pytest

from ascl_ray import bench_trl as bt
from ascl_ray.batch import PromptRow
from ascl_ray.bench import format_table
from ascl_ray.data.synthetic import read_prompts_jsonl, split
from ascl_ray.reward.math import verify_math


def test_prompt_set_is_deterministic_valid_and_gradable():
    rows = bt.math_prompts(48, seed=0)
    assert [r.__dict__ for r in rows] == [r.__dict__ for r in bt.math_prompts(48, seed=0)]
    assert [r.text for r in rows] != [r.text for r in bt.math_prompts(48, seed=1)]
    assert len({r.prompt_id for r in rows}) == len({r.text for r in rows}) == 48
    for r in rows:
        assert isinstance(r, PromptRow) and r.prompt_type == "math" and r.math_kind == "gsm8k"
        a, op, b = r.text[len("What is "):-1].split(" ")
        ans = int(a) + int(b) if op == "+" else int(a) - int(b)
        assert ans >= 0 and r.reference == f"#### {ans}"
        # the verifier both arms use grades the right number 1, a wrong one 0
        assert verify_math(f"The answer is {ans}.", r.reference, "gsm8k") == 1.0
        assert verify_math(f"The answer is {ans + 1}.", r.reference, "gsm8k") == 0.0


@pytest.mark.parametrize("eval_frac", [0.0, 0.2])
def test_written_prompts_leave_exactly_n_to_train(tmp_path, eval_frac):
    path = bt.write_prompts(str(tmp_path / "p.jsonl"), 48, eval_frac, seed=0)
    rows = read_prompts_jsonl(path)          # what ascl-ray's data.source=jsonl reads
    assert len(rows) == bt.rows_to_write(48, eval_frac) > 48
    train, ev = split(rows, eval_frac=eval_frac, seed=0)
    assert len(train) == 48 and len(ev) == len(rows) - 48


def test_abba_order():
    assert bt.abba(1) == [bt.A, bt.B]
    assert bt.abba(2) == [bt.A, bt.B, bt.B, bt.A]
    order = bt.abba(3)
    assert order == [bt.A, bt.B, bt.B, bt.A, bt.A, bt.B]
    assert order.count(bt.A) == order.count(bt.B) == 3
    three = bt.abba(2, bt.A, bt.B, "1 learner rank")             # extra arms sit between, mirrored
    assert three == [bt.A, "1 learner rank", bt.B, bt.B, "1 learner rank", bt.A]


def test_variant_rows_against_trl():
    v = bt.summarize([bt.ArmRun(bt.A, _steps([9.0, 3.0, 3.0], sync=0.3), startup_s=30.0)], warmup=1)
    b = bt.summarize([bt.ArmRun(bt.B, _steps([9.0, 4.0, 4.0]), startup_s=9.0)], warmup=1)
    by = {r["name"]: r for r in bt.variant_rows("1 learner rank", v, b, "tiny")}
    assert by[f"{bt.A} [1 learner rank] step / {bt.B} step"]["value"] == pytest.approx(0.75)
    assert "10.0 % of the step" in by[f"{bt.A} [1 learner rank] weight sync (verification included)"]["note"]
    assert bt.one_machine_variant(bf16=False) == ["learner=cpu_single"]
    assert bt.one_machine_variant(bf16=True) == ["learner=cpu_single", "rollout.dtype=bfloat16"]


def _steps(values, **extra):
    return [{"step": v, "generation": v / 2, "train": v / 2, "tokens": 100.0, **extra} for v in values]


def test_warmup_dropped_per_run_and_medians_pooled():
    runs = [_steps([50.0, 40.0, 1.0, 2.0, 3.0]), _steps([60.0, 30.0, 4.0, 5.0, 6.0])]
    kept = bt.measured_steps(runs, warmup=2)
    assert [s["step"] for s in kept] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert bt.median_of(kept, "step") == 3.5
    assert math.isnan(bt.median_of(kept, "sync"))       # TRL has no sync phase
    s = bt.summarize([bt.ArmRun(bt.B, r, startup_s=10.0) for r in runs], warmup=2)
    assert s["n_steps"] == 6 and s["step"] == 3.5 and s["generation"] == 1.75
    assert s["tok_per_s"] == pytest.approx(600 / 21)     # all measured tokens / all measured step time
    assert s["gen_tok_per_s"] == pytest.approx(600 / 10.5)
    assert s["startup"] == [10.0, 10.0]


def test_rows_ratio_and_format():
    a = bt.summarize([bt.ArmRun(bt.A, _steps([9.0, 6.0, 6.0], sync=0.5, other=0.1), startup_s=40.0,
                                load=[0.5, 1.25])], warmup=1)
    b = bt.summarize([bt.ArmRun(bt.B, _steps([9.0, 4.0, 4.0], score=0.2), startup_s=12.0, load=[0.75, 0.8])],
                     warmup=1)
    rows = bt.comparison_rows(a, b, "tiny, 8 prompts x 4", runs_per_arm=1, warmup=1)
    by = {r["name"]: r for r in rows}
    assert set(rows[0]) == {"section", "name", "value", "unit", "note"}
    assert all(r["section"] == "vs TRL GRPOTrainer (tiny, 8 prompts x 4)" for r in rows)
    ratio = by[f"{bt.A} step / {bt.B} step"]
    assert ratio["value"] == pytest.approx(1.5) and ratio["unit"] == "x"
    assert "load average 0.5-1.2 over the runs" in ratio["note"]     # a busy machine shows in the table
    assert by[f"{bt.A} step"]["value"] == 6.0 and by[f"{bt.B} step"]["value"] == 4.0
    assert by[f"{bt.A} start-up (process start to first step)"]["value"] == 40.0
    assert "8.3 % of the step" in by[f"{bt.A} weight sync (timing/sync, verification included)"]["note"]
    assert by[f"{bt.B} generated tokens per second of step time"]["value"] == pytest.approx(25.0)
    table = format_table(rows)
    assert f"| {bt.A} step / {bt.B} step | 1.500 | x |" in table
    assert len(table.splitlines()) == len(rows) + 2


def test_model_overrides_for_a_folder(tmp_path):
    ov = bt.model_overrides(str(tmp_path))
    assert f"model.path={tmp_path}" in ov and "model.build_tiny=false" in ov
    assert bt.model_overrides("smollm2") == ["model=smollm2_135m"]
