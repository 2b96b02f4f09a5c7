"""Adversarial inputs: every call returns within its deadline and nothing in the text is ever executed."""

from __future__ import annotations

import os
import time
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ascl_ray.reward.math import verify_math, verify_math_ex
from ascl_ray.reward.refusal import detect_refusal

TIMEOUT = 2.0
SLACK = 1.5  # killing and reaping the helper process, thread scheduling on a busy 2-core box

MARKER = f"/tmp/ascl_pwned_{uuid.uuid4().hex}"
PAYLOADS = [
    f"__import__('os').system('touch {MARKER}')",
    f"\\boxed{{__import__('os').system('touch {MARKER}')}}",
    f"$__import__('os').system('touch {MARKER}')$",
    f"The answer is {{}}.__class__.__base__.__subclasses__() and open('{MARKER}','w')",
    f"\\boxed{{eval(\"__import__('os').system('touch {MARKER}')\")}}",
    f"\\boxed{{exec('import os; os.system(\"touch {MARKER}\")')}}",
    f"\\boxed{{Symbol('x').__class__.__init__.__globals__['os'].system('touch {MARKER}')}}",
    f"\\boxed{{\\text{{__import__('os').system('touch {MARKER}')}}}}",
    f"final answer: lambda: open('{MARKER}','w')",
]


def _nested_frac(depth: int) -> str:
    s = "1"
    for _ in range(depth):
        s = f"\\frac{{{s}}}{{2}}"
    return s


ADVERSARIAL = [
    "10**10**10",
    "\\boxed{10**10**10}",
    "\\boxed{10^{10^{10}}}",
    "\\boxed{9^{9^{9^{9}}}}",
    "\\boxed{(10^{100})!}",
    "\\boxed{" + "9" * 100000 + "}",
    "9" * 100000,
    "#### " + "9" * 100000,
    "\\boxed{" + _nested_frac(200) + "}",
    "\\boxed{" + _nested_frac(2000) + "}",
    "\\boxed{" + "{" * 5000 + "1" + "}" * 5000 + "}",
    "\\boxed{" * 3000,
    "x" * 100000,
    ("\\frac{" * 20000) + "1",
    "\\boxed{\\sqrt{" * 1000 + "2" + "}" * 1000 + "}",
    "1," * 50000,
    "\\boxed{" + "1+" * 20000 + "1}",
    "\\begin{pmatrix}" + "1&" * 5000 + "1\\end{pmatrix}",
    "\\boxed{\\int_0^\\infty e^{-x^{1000000}}dx}",
    "\\boxed{\\sum_{k=1}^{10^{12}} k^{k}}",
    "<think>" * 20000,
    "<think>" + "a" * 50000 + "</think>" * 5000,
    "sorry, but " * 10000,
]


def _check(resp: str, ref: str, kind: str) -> None:
    t = time.monotonic()
    res = verify_math_ex(resp, ref, kind, timeout_s=TIMEOUT)
    dt = time.monotonic() - t
    assert res.score in (0.0, 1.0)
    assert dt < TIMEOUT + SLACK, (dt, res.method, resp[:80])


@pytest.fixture(autouse=True)
def _no_marker(math_warm):
    yield
    assert not os.path.exists(MARKER), "model text was executed"


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("kind", ["math", "gsm8k"])
def test_code_payloads_never_execute(payload, kind):
    _check(payload, "5", kind)
    _check(payload + "\n\\boxed{5}", "5", kind)  # must not break a correct answer either
    assert verify_math(payload + "\n\\boxed{5}", "5", kind) == 1.0
    detect_refusal([payload])


@pytest.mark.parametrize("resp", ADVERSARIAL, ids=[f"adv{i}" for i in range(len(ADVERSARIAL))])
def test_adversarial_within_deadline(resp):
    _check(resp, "\\frac{1}{2}", "math")
    _check(resp, "#### 72", "gsm8k")
    t = time.monotonic()
    detect_refusal([resp])
    assert time.monotonic() - t < 2.0


def test_library_still_works_after_timeouts():
    """A helper killed at its deadline is replaced: the next library-path call succeeds."""
    t = time.monotonic()
    res = verify_math_ex("\\boxed{\\sqrt{2}/2}", "\\frac{1}{\\sqrt{2}}", "math", timeout_s=0.002)
    assert res.timed_out and res.score == 0.0 and time.monotonic() - t < 1.0
    assert verify_math_ex("\\boxed{10^{10^{10}}}", "5", "math").method == "too_expensive"
    assert verify_math("\\boxed{\\sqrt{2}/2}", "\\frac{1}{\\sqrt{2}}", "math", timeout_s=30) == 1.0


latex_pieces = st.sampled_from(
    ["\\frac{", "}{", "}", "{", "\\sqrt{", "^", "_", "\\left(", "\\right)", "\\boxed{", "\\pi", "x", "=", ",", "-",
     "\\infty", "\\cdot", "\\text{", "9" * 50, "10^{10^{", "\\!", "$", "####", " ", "\\\\", "\\begin{pmatrix}",
     "&", "\\end{pmatrix}", "(", ")", "[", "]", "0.5", "\\dfrac", "__import__", "('os')"]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(latex_pieces, min_size=0, max_size=40).map("".join), st.sampled_from(["math", "gsm8k"]))
def test_fuzz_latex_soup(resp, kind):
    _check(resp, "\\frac{\\pi}{2}" if kind == "math" else "#### 3", kind)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=3000), st.text(max_size=50))
def test_fuzz_arbitrary_text(resp, ref):
    _check(resp, ref or "1", "math")
    _check(resp, "#### 1", "gsm8k")
    assert isinstance(detect_refusal([resp])[0], bool)


def test_worker_refuses_string_eval():
    """Inside the math-verify helper, sympy's string evaluator accepts only numeric literals."""
    import subprocess
    import sys
    from pathlib import Path

    import ascl_ray.reward._mv_worker as w

    code = (
        "import sys, importlib.util\n"
        "spec = importlib.util.spec_from_file_location('mvw', %r)\n"
        "w = importlib.util.module_from_spec(spec); spec.loader.exec_module(w); w._forbid_eval()\n"
        "import sympy\n"
        "assert sympy.Number('12') == 12 and sympy.Float('1.5') == 1.5\n"
        "for bad in [\"__import__('os').system('touch %s')\", 'x+1']:\n"
        "    try:\n"
        "        sympy.sympify(bad); print('EVALUATED', bad); sys.exit(1)\n"
        "    except Exception as e:\n"
        "        pass\n"
        "print('OK')\n"
    ) % (str(Path(w.__file__)), MARKER)
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "OK" in out.stdout, out.stdout + out.stderr
