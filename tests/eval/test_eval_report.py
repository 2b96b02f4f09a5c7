"""Report files: markdown table with CIs, JSON, PNG plot."""

from __future__ import annotations

import json

import pytest

from ascl_ray.eval.metrics import summarize, wilson_interval
from ascl_ray.eval.report import write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _records(shift: int):
    recs = []
    for i in range(10):
        recs.append(dict(benchmark="harmbench", prompt_id=f"h{i}", prompt_type="harmful", sample_idx=0, reward=1.0,
                         safe=i < 7 + shift, refusal=i < 5, correct=None, consulted=i < 6, n_calls=int(i < 6),
                         response_len=50 + i))
        recs.append(dict(benchmark="xstest_safe", prompt_id=f"x{i}", prompt_type="benign_sensitive", sample_idx=0,
                         reward=0.0, safe=True, refusal=i < 3 - shift, correct=None, consulted=i < 2, n_calls=0,
                         response_len=80))
        for j in range(2):
            recs.append(dict(benchmark="gsm8k", prompt_id=f"g{i}", prompt_type="math", sample_idx=j, reward=None,
                             safe=None, refusal=None, correct=(i + j + shift) % 3 == 0, consulted=False, n_calls=0,
                             response_len=200))
    return recs


def _check_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and len(data) > 5000
    from PIL import Image

    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 500 and im.size[1] > 400


def test_write_report_single_method(tmp_path):
    s = summarize(_records(0), k=2)
    paths = write_report(s, tmp_path / "out", {"method": "grpo", "model": "smollm2-135m", "step": 10,
                                               "nan": float("nan")})
    assert set(paths) == {"md", "json", "png"}
    for p in paths.values():
        assert p.is_file() and p.stat().st_size > 0
    md = paths["md"].read_text()
    lo, hi = wilson_interval(7, 10)
    assert f"70.0 [{100 * lo:.1f}, {100 * hi:.1f}]" in md  # harmbench safety rate with Wilson CI
    assert "| method | harmbench safety rate↑ | xstest_safe refusal rate↓ | gsm8k accuracy avg@2↑ |" in md
    assert "| grpo |" in md and "### pass@2 (%)" in md and "### consultation rate (%)" in md
    data = json.loads(paths["json"].read_text())
    assert data["methods"] == ["grpo"] and data["meta"]["nan"] is None
    assert data["summaries"]["grpo"]["benchmarks"]["harmbench"]["metrics"]["safety_rate"]["value"] == 0.7
    _check_png(paths["png"])


def test_write_report_several_methods(tmp_path):
    sums = {"grpo": summarize(_records(0), k=2), "ifpo": summarize(_records(1), k=2)}
    p1 = write_report(None, tmp_path / "a", {"step": 5}, summaries=sums)
    p2 = write_report(sums, tmp_path / "b", {"step": 5})
    assert p1["md"].read_text() == p2["md"].read_text()
    md = p1["md"].read_text()
    assert "| grpo |" in md and "| ifpo |" in md and "80.0 [" in md
    assert json.loads(p1["json"].read_text())["methods"] == ["grpo", "ifpo"]
    _check_png(p1["png"])
    # a method lacking a benchmark gets a dash, no crash
    partial = summarize([r for r in _records(0) if r["benchmark"] != "gsm8k"], k=2)
    p3 = write_report({"full": sums["grpo"], "partial": partial}, tmp_path / "c", {}, plot=True)
    assert "| partial |" in p3["md"].read_text() and "–" in p3["md"].read_text()
    _check_png(p3["png"])


def test_write_report_bad_input(tmp_path):
    with pytest.raises(ValueError, match="summarize"):
        write_report({"not": "a summary"}, tmp_path, {})
    with pytest.raises(ValueError, match="either summary or summaries"):
        s = summarize(_records(0), k=1)
        write_report(s, tmp_path, {}, summaries={"a": s})
