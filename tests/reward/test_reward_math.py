"""verify_math on the real GSM8K test set and MATH-500, perturbations, equivalences, API contract."""

from __future__ import annotations

import json
import re
import threading
import time
from fractions import Fraction

import pytest

from ascl_ray.reward.math import verify_math, verify_math_ex


def _rows(path):
    return [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]


def _gsm_ans(answer: str) -> str:
    return answer.rsplit("####", 1)[1].strip()


# independent of the module under test: plain numbers / a/b / \frac{a}{b}, +1
_NUM = re.compile(r"^-?\d+(\.\d+)?$")
_FRAC = re.compile(r"^(-?)\\d?frac\{(\d+)\}\{(\d+)\}$")


def _plus_one(ans: str):
    a = ans.replace(",", "").replace("\\!", "").strip()
    if _NUM.match(a):
        v = Fraction(a) + 1
    else:
        m = _FRAC.match(a.replace("\\dfrac", "\\frac"))
        if not m:
            return None
        v = Fraction(int(m.group(2)), int(m.group(3))) * (-1 if m.group(1) else 1) + 1
    if v.denominator == 1:
        return str(v.numerator)
    return f"\\frac{{{v.numerator}}}{{{v.denominator}}}"


def _canon(ans: str) -> str:
    s = re.sub(r"\s+|\\!|\\,|\\left|\\right|\$", "", ans).replace("\\dfrac", "\\frac")
    return re.sub(r"^[a-z]=", "", s)


def _report(name, n, fails):
    rate = 1 - len(fails) / n
    print(f"\n[{name}] {n - len(fails)}/{n} = {rate:.4f}; failures: {fails[:20]}")
    return rate


def test_gsm8k_reference_solutions_pass_and_perturbed_fail(data_dir):
    rows = _rows(data_dir / "gsm8k" / "test.jsonl")
    assert len(rows) == 1319
    t0 = time.time()
    fails = [i for i, r in enumerate(rows) if verify_math(r["answer"], r["answer"], "gsm8k") != 1.0]
    assert _report("gsm8k reference", len(rows), fails) >= 0.995
    # the bare final answer, boxed, and as the last number of a sentence
    for i, r in enumerate(rows[:200]):
        a = _gsm_ans(r["answer"])
        assert verify_math(f"So the answer is \\boxed{{{a}}}.", r["answer"], "gsm8k") == 1.0, a
        assert verify_math(f"Adding up, she makes {a} dollars.", r["answer"], "gsm8k") == 1.0, a
    wrong_fails = []
    for i, r in enumerate(rows):
        a = _gsm_ans(r["answer"])
        if verify_math("Thus\n#### " + _plus_one(a), r["answer"], "gsm8k") != 0.0:
            wrong_fails.append(("+1", i, a))
        j = i + 1
        while Fraction(_gsm_ans(rows[j % len(rows)]["answer"]).replace(",", "")) == Fraction(a.replace(",", "")):
            j += 1
        other = _gsm_ans(rows[j % len(rows)]["answer"])
        if verify_math(f"The answer is \\boxed{{{other}}}", r["answer"], "gsm8k") != 0.0:
            wrong_fails.append(("other", i, a, other))
    assert _report("gsm8k perturbed -> wrong", 2 * len(rows), wrong_fails) >= 0.995
    assert time.time() - t0 < 60


def test_math500_reference_answers_pass_and_perturbed_fail(data_dir, math_warm):
    rows = _rows(data_dir / "math500" / "test.jsonl")
    assert len(rows) == 500
    t0 = time.time()
    fails = []
    for i, r in enumerate(rows):
        resp = f"Putting it together, the final answer is $\\boxed{{{r['answer']}}}$."
        if verify_math(resp, r["answer"], "math") != 1.0:
            fails.append((i, r["answer"]))
    assert _report("math500 boxed reference", 500, fails) >= 0.995
    # the official worked solutions (answer boxed somewhere inside)
    sol_fails = [(i, r["answer"]) for i, r in enumerate(rows) if verify_math(r["solution"], r["answer"], "math") != 1.0]
    assert _report("math500 reference solutions", 500, sol_fails) >= 0.995

    wrong, fails = 0, []
    for i, r in enumerate(rows):
        a = r["answer"]
        cands = []
        p1 = _plus_one(a)
        if p1 is not None:
            cands.append(("+1", p1))
        j = i + 1
        while _canon(rows[j % 500]["answer"]) == _canon(a):
            j += 1
        cands.append(("other", rows[j % 500]["answer"]))
        for kind, c in cands:
            wrong += 1
            if verify_math(f"The answer is $\\boxed{{{c}}}$.", a, "math") != 0.0:
                fails.append((kind, a, c))
    assert _report("math500 perturbed -> wrong", wrong, fails) >= 0.995
    assert time.time() - t0 < 120


@pytest.mark.parametrize(
    "response,reference",
    [
        ("\\boxed{\\frac12}", "0.5"),
        ("\\boxed{\\dfrac{3}{2}}", "\\frac32"),
        ("\\boxed{1.5}", "\\frac{3}{2}"),
        ("\\boxed{10080}", "10,\\!080"),
        ("\\boxed{1,000}", "1000"),
        ("\\boxed{90}", "90^\\circ"),
        ("\\boxed{90^{\\circ}}", "90"),
        ("\\boxed{\\$32,348}", "\\$32,\\!348"),
        ("\\boxed{864}", "864 \\mbox{ inches}^2"),
        ("\\boxed{5.4}", "5.4 \\text{ cents}"),
        ("\\boxed{x=5}", "5"),
        ("\\boxed{5}", "x=5"),
        ("\\boxed{1.8}", "1\\frac{4}{5}"),
        ("\\boxed{(3, \\pi/2)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("\\boxed{\\frac{\\sqrt{2}}{2}}", "\\frac{1}{\\sqrt{2}}"),
        ("\\boxed{[-2,7]}", "x \\in [-2,7]"),
        ("\\boxed{(2, \\infty)}", "(2,\\infty)"),
        ("\\boxed{\\left(\\frac{3}{5},\\frac{8}{3}\\right]}", "\\left(\\frac{3}{5},\\frac{8}{3}\\right]"),
        ("\\boxed{3\\sqrt{13}}", "3\\sqrt{13}"),
        ("\\boxed{\\text{(C)}}", "\\text{(C)}"),
        ("\\boxed{50\\%}", "50"),
        ("The final answer is $\\frac{14}{3}$.", "\\frac{14}{3}"),
    ],
)
def test_math_equivalences(response, reference, math_warm):
    assert verify_math(response, reference, "math") == 1.0, verify_math_ex(response, reference, "math")


@pytest.mark.parametrize(
    "response,reference",
    [
        ("\\boxed{3}", "4"),
        ("\\boxed{0.51}", "\\frac12"),
        ("\\boxed{(3, \\pi)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("\\boxed{[-2,7)}", "[-2,7]"),
        ("\\boxed{2\\sqrt{13}}", "3\\sqrt{13}"),
        ("no answer here", "5"),
        ("\\boxed{}", "5"),
    ],
)
def test_math_non_equivalences(response, reference, math_warm):
    assert verify_math(response, reference, "math") == 0.0


def test_gsm8k_extraction_order():
    ref = "blah\n#### 72"
    assert verify_math("I think 5. Then \\boxed{72} and 3 more lines 9", ref, "gsm8k") == 1.0  # boxed over last number
    assert verify_math("\\boxed{70}\n#### 72", ref, "gsm8k") == 1.0  # '#### n' over boxed
    assert verify_math("first 72 then 73", ref, "gsm8k") == 0.0  # last number
    assert verify_math("72.00", ref, "gsm8k") == 1.0
    assert verify_math("$1,000", "#### 1000", "gsm8k") == 1.0
    assert verify_math("-3 degrees", "#### -3", "gsm8k") == 1.0
    assert verify_math("nothing numeric", ref, "gsm8k") == 0.0


def test_unknown_kind_and_bad_timeout():
    with pytest.raises(ValueError, match="kind"):
        verify_math("1", "1", "aime")
    with pytest.raises(ValueError, match="timeout"):
        verify_math("1", "1", "math", timeout_s=0)


def test_works_from_threads_with_deadline(math_warm):
    """Library path + deadline from non-main threads (math-verify's own signal timeout would fail here)."""
    out, errors = [], []

    def work(k):
        try:
            out.append(verify_math(f"\\boxed{{\\sqrt{{{k}}}/{k}}}", f"\\frac{{1}}{{\\sqrt{{{k}}}}}", "math"))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in (2, 3, 5, 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and out == [1.0] * 4
