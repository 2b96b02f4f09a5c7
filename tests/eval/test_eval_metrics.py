"""Metric functions against hand-computed values."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ascl_ray.eval.metrics import (
    Z95,
    avg_at_k,
    normal_interval,
    pass_at_k,
    proportion_estimate,
    summarize,
    wilson_interval,
)


def test_wilson_hand_values():
    # p = 0.8, n = 10, z = 1.959964: center = (0.8 + z^2/20) / (1 + z^2/10) = 0.716751,
    # half = z / (1 + z^2/10) * sqrt(0.016 + z^2/400) = 0.226589
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.490162, abs=1e-6) and hi == pytest.approx(0.943318, abs=1e-6)
    lo, hi = wilson_interval(0, 10)  # [0, z^2 / (n + z^2)]
    assert lo == 0.0 and hi == pytest.approx(Z95**2 / (10 + Z95**2), abs=1e-12)
    lo, hi = wilson_interval(10, 10)
    assert hi == 1.0 and lo == pytest.approx(10 / (10 + Z95**2), abs=1e-12)
    lo, hi = wilson_interval(1, 2)
    assert (lo + hi) / 2 == pytest.approx(0.5) and hi - lo == pytest.approx(2 * Z95 / (1 + Z95**2 / 2) * math.sqrt(0.125 + Z95**2 / 16))
    with pytest.raises(ValueError):
        wilson_interval(1, 0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_pass_at_k_hand_values():
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - 21 / 252)  # 1 - C(7,5)/C(10,5)
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(5, 4, 2) == 1.0  # fewer than k wrong samples
    assert pass_at_k(4, 0, 4) == 0.0 and pass_at_k(4, 4, 4) == 1.0
    assert pass_at_k(4, 1, 4) == 1.0
    with pytest.raises(ValueError, match="n >= k"):
        pass_at_k(2, 1, 3)


@given(st.integers(1, 40), st.data())
def test_pass_at_k_properties(n, data):
    k = data.draw(st.integers(1, n))
    c = data.draw(st.integers(0, n))
    p = pass_at_k(n, c, k)
    assert 0.0 <= p <= 1.0
    if c < n:
        assert pass_at_k(n, c + 1, k) >= p - 1e-12
    if k < n:
        assert pass_at_k(n, c, k + 1) >= p - 1e-12
    assert pass_at_k(n, c, 1) == pytest.approx(c / n)


@given(st.integers(1, 500), st.data())
def test_wilson_contains_point_estimate(n, data):
    s = data.draw(st.integers(0, n))
    lo, hi = wilson_interval(s, n)
    assert 0.0 <= lo <= s / n <= hi <= 1.0


def test_avg_at_k_and_normal_interval():
    assert avg_at_k([[True, False], [False, False], [True, True]]) == pytest.approx(0.5)
    assert avg_at_k([[True, False, False, False]]) == 0.25
    mean, lo, hi = normal_interval([1.0, 2.0, 3.0, 4.0])
    half = Z95 * math.sqrt((2.25 + 0.25 + 0.25 + 2.25) / 3 / 4)
    assert (mean, lo, hi) == pytest.approx((2.5, 2.5 - half, 2.5 + half))
    assert normal_interval([3.0]) == (3.0, None, None)


def _rec(bench, pid, ptype, idx, **kw):
    base = dict(benchmark=bench, prompt_id=pid, prompt_type=ptype, sample_idx=idx, reward=None, safe=None,
                refusal=None, correct=None, consulted=False, n_calls=0, response_len=10)
    base.update(kw)
    return base


def test_summarize_math_avg_and_pass_at_k():
    patterns = {"p1": [True, False], "p2": [False, False], "p3": [True, True]}
    recs = [_rec("gsm8k", pid, "math", i, correct=c, reward=float(c), consulted=(i == 0), n_calls=int(i == 0),
                 response_len=100 + 10 * i)
            for pid, cs in patterns.items() for i, c in enumerate(cs)]
    s = summarize(recs, k=2)
    blk = s["benchmarks"]["gsm8k"]
    assert blk["prompt_type"] == "math" and blk["n_prompts"] == 3 and blk["n_samples"] == 6
    m = blk["metrics"]
    assert m["avg_at_k"]["value"] == pytest.approx(0.5)
    # per-prompt accuracies [0.5, 0, 1]: sd 0.5, half width z * 0.5 / sqrt(3) > 0.5 -> clipped to [0, 1]
    assert (m["avg_at_k"]["lo"], m["avg_at_k"]["hi"]) == (0.0, 1.0) and m["avg_at_k"]["method"] == "normal"
    assert m["pass_at_k"]["value"] == pytest.approx(2 / 3)
    # per-prompt pass@2 [1, 0, 1]: sd sqrt(1/3), half width z * sqrt(1/3) / sqrt(3) = z / 3
    assert m["pass_at_k"]["lo"] == pytest.approx(2 / 3 - Z95 / 3) and m["pass_at_k"]["hi"] == 1.0
    # consulted on sample 0 only -> per-prompt 0.5 everywhere -> zero-width normal CI
    assert m["consultation_rate"] == {"value": 0.5, "lo": 0.5, "hi": 0.5, "n": 3, "method": "normal"}
    assert m["mean_response_len"]["value"] == pytest.approx(105.0)
    assert m["mean_tool_calls"]["value"] == pytest.approx(0.5)
    assert m["mean_reward"]["value"] == pytest.approx(0.5)
    assert "safety_rate" not in m and "refusal_rate" not in m
    # pass@1 from the same records = avg
    s1 = summarize(recs, k=1)["benchmarks"]["gsm8k"]["metrics"]
    assert s1["pass_at_k"]["value"] == pytest.approx(0.5)
    assert s["by_prompt_type"]["math"]["metrics"]["avg_at_k"] == m["avg_at_k"]


def test_summarize_safety_one_sample_per_prompt_uses_wilson():
    recs = [_rec("harmbench", f"h{i}", "harmful", 0, safe=i < 8, refusal=i < 6, consulted=i < 5, n_calls=int(i < 5))
            for i in range(10)]
    recs += [_rec("xstest_safe", f"x{i}", "benign_sensitive", 0, safe=True, refusal=i < 1) for i in range(4)]
    s = summarize(recs, k=1)
    m = s["benchmarks"]["harmbench"]["metrics"]
    assert m["safety_rate"]["value"] == 0.8 and m["safety_rate"]["method"] == "wilson" and m["safety_rate"]["n"] == 10
    assert (m["safety_rate"]["lo"], m["safety_rate"]["hi"]) == pytest.approx(wilson_interval(8, 10))
    assert m["refusal_rate"]["value"] == 0.6 and m["consultation_rate"]["value"] == 0.5
    assert "avg_at_k" not in m
    x = s["benchmarks"]["xstest_safe"]["metrics"]
    assert x["refusal_rate"]["value"] == 0.25
    assert (x["refusal_rate"]["lo"], x["refusal_rate"]["hi"]) == pytest.approx(wilson_interval(1, 4))
    assert set(s["by_prompt_type"]) == {"harmful", "benign_sensitive"}


def test_proportion_with_several_samples_per_prompt_is_clustered():
    est = proportion_estimate([[1, 1], [0, 0], [1, 0]])
    assert est.method == "normal" and est.n == 3 and est.value == pytest.approx(0.5)
    # unlike a Wilson interval over 6 "independent" samples, the interval is over 3 prompt means
    assert est.lo == pytest.approx(max(0.0, 0.5 - Z95 * 0.5 / math.sqrt(3)))


def test_summarize_ignores_none_and_missing_optional_fields():
    recs = [_rec("b", "p1", "harmful", 0, safe=True), _rec("b", "p2", "harmful", 0, safe=None)]
    del recs[1]["refusal"], recs[1]["reward"]
    m = summarize(recs, k=1)["benchmarks"]["b"]["metrics"]
    assert m["safety_rate"]["value"] == 1.0 and m["safety_rate"]["n"] == 1
    assert "refusal_rate" not in m and "mean_reward" not in m
    assert m["mean_response_len"]["lo"] is not None  # 2 prompts


def test_summarize_errors():
    with pytest.raises(ValueError, match=r"record 0: missing field\(s\) \['sample_idx'\]"):
        summarize([{k: v for k, v in _rec("b", "p", "math", 0).items() if k != "sample_idx"}], k=1)
    with pytest.raises(ValueError, match=r"need >= 4 samples"):
        summarize([_rec("g", "p", "math", i, correct=True) for i in range(3)], k=4)
    with pytest.raises(ValueError, match="duplicate sample_idx"):
        summarize([_rec("g", "p", "math", 0, correct=True)] * 2, k=1)
    with pytest.raises(ValueError, match="mix prompt types"):
        summarize([_rec("g", "p", "math", 0, correct=True), _rec("g", "q", "harmful", 0, safe=True)], k=1)
    with pytest.raises(ValueError, match="field 'safe'='yes' must be a bool"):
        summarize([_rec("g", "p", "harmful", 0, safe="yes")], k=1)
    with pytest.raises(ValueError, match="prompt_type='unsafe'"):
        summarize([_rec("g", "p", "unsafe", 0)], k=1)
    with pytest.raises(ValueError, match="k must be >= 1"):
        summarize([], k=0)


def test_accuracy_with_one_sample_per_prompt_gets_a_wilson_interval():
    """0 of 10 correct is not a certain 0%: with k=1 avg@k / pass@k are proportions (Wilson)."""
    from ascl_ray.eval.metrics import summarize, wilson_interval

    recs = [{"benchmark": "gsm8k", "prompt_id": f"p{i}", "prompt_type": "math", "sample_idx": 0, "correct": False,
             "consulted": False, "n_calls": 0, "response_len": 5, "reward": 0.0} for i in range(10)]
    m = summarize(recs, k=1)["benchmarks"]["gsm8k"]["metrics"]
    lo, hi = wilson_interval(0, 10)
    for name in ("avg_at_k", "pass_at_k"):
        assert m[name]["value"] == 0.0 and m[name]["method"] == "wilson"
        assert m[name]["lo"] == pytest.approx(lo) and m[name]["hi"] == pytest.approx(hi) and hi > 0.2
