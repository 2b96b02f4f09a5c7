"""Math answer verifier for the ``math`` prompt type (methods.md section 5).

``verify_math(response, reference, kind, timeout_s=5.0) -> 1.0 | 0.0``

kinds
  ``gsm8k``  reference like ``"... #### 72"`` (or a bare number). The response answer is taken from the last
             ``#### n``, else the last ``\\boxed{...}``, else the last number in the text. Compared as exact
             decimals (``1,000`` == ``1000`` == ``1000.00``; ``\\frac{3}{4}`` == ``0.75``).
  ``math``   reference is a MATH answer (LaTeX, optionally inside ``\\boxed{}``). The response answer is the
             last ``\\boxed{...}`` (else math-verify's "final answer is $...$" extraction over the tail of the
             response). Two stages:
               1. a pure-python normaliser (``\\left``/``\\right``, ``\\dfrac``, ``\\frac12``, spaces, ``\\!``,
                  ``^\\circ``, ``\\%``, ``\\$``, ``\\text{}``, thousands commas, unit words, ``x=`` prefixes,
                  mixed numbers) with exact rational comparison: decides equal strings and number-vs-number
                  cases without any library;
               2. otherwise math-verify (HF) LaTeX parse + verify (intervals, tuples, matrices, sqrt, pi, ...)
                  in a helper subprocess with a hard deadline.

Guarantees
  * Model text is never passed to ``eval``/``exec``/``sympify``: stage 1 is regex + ``decimal``/``fractions``;
    stage 2 uses only math-verify's grammar-based LaTeX parser, in a separate process where sympy's string
    evaluator is disabled (see ``_mv_worker.py``) and memory is capped.
  * Hard per-call time limit from any thread: stage 1 is linear in the input size; stage 2 waits at most
    the remaining budget and then kills the helper process (restarted in the background). A timeout scores
    0.0 (``verify_math_ex`` reports ``timed_out``).

Helper processes: ``ASCL_MATH_WORKERS`` (default 1) per Python process, started lazily; ``warmup()`` starts
them ahead of time; ``set_math_workers(n)`` changes the count. This module imports neither ray nor vllm.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import re
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Optional

__all__ = ["verify_math", "verify_math_ex", "MathResult", "warmup", "set_math_workers", "MATH_KINDS"]

MATH_KINDS = ("gsm8k", "math")

# longest answer string considered at all (MATH answers are < 200 chars; a pmatrix ~ 100)
_MAX_ANSWER_CHARS = 2000
# longest number (digits) compared numerically; longer ones only match by exact string
_MAX_NUMBER_CHARS = 1000
# tail of the response handed to math-verify when there is no \boxed{}
_TAIL_CHARS = 3000


@dataclass
class MathResult:
    score: float
    pred: Optional[str]  # extracted answer (None: nothing found)
    ref: Optional[str]
    method: str  # fast_equal | fast_numeric | math_verify | no_answer | too_long | too_expensive | timeout | error
    timed_out: bool = False
    error: str = ""


# ----------------------------------------------------------------------------------------------------------
# extraction (pure python, linear time)
# ----------------------------------------------------------------------------------------------------------
def _match_braces(text: str, start: int) -> Optional[int]:
    """``text[start] == '{'``; index of the matching '}' (escaped ``\\{``/``\\}`` ignored), or None."""
    depth = 0
    i, n = start, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def last_boxed(text: str, max_tries: int = 8) -> Optional[str]:
    """Content of the last non-empty ``\\boxed{...}`` / ``\\fbox{...}`` (or ``\\boxed 5``), else None."""
    end = len(text)
    for _ in range(max_tries):
        i = max(text.rfind("\\boxed", 0, end), text.rfind("\\fbox", 0, end))
        if i < 0:
            return None
        j = i + (6 if text.startswith("\\boxed", i) else 5)
        while j < len(text) and text[j] in " \t":
            j += 1
        content = None
        if j < len(text) and text[j] == "{":
            k = _match_braces(text, j)
            if k is not None:
                content = text[j + 1 : k]
        elif j > i and j < len(text) and text[j - 1] in " \t":
            m = re.match(r"[^\s$]+", text[j : j + _MAX_ANSWER_CHARS + 1])
            content = m.group(0) if m else None
        if content is not None and content.strip():
            return content.strip()
        end = i
    return None


_NUM_RE = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?|-?\.\d+")


def _numbers(text: str) -> list[str]:
    return [m.group(0) for m in _NUM_RE.finditer(text)]


def _gsm8k_reference(reference: str) -> str:
    if "####" in reference:
        return reference.rsplit("####", 1)[1].strip()
    return reference.strip()


def extract_gsm8k_answer(response: str) -> Optional[str]:
    """``#### n`` (last), else last ``\\boxed{}``, else the last number in the text."""
    if "####" in response:
        tail = response.rsplit("####", 1)[1]
        line = tail.strip().split("\n", 1)[0] if tail.strip() else ""
        if _to_rational(_normalize(line)) is not None:
            return line.strip()
        nums = _numbers(line)
        if nums:
            return nums[0]
    boxed = last_boxed(response)
    if boxed is not None:
        if len(boxed) <= _MAX_ANSWER_CHARS and _to_rational(_normalize(boxed)) is not None:
            return boxed
        nums = _numbers(boxed)
        if nums:
            return nums[-1]
    nums = _last_number(response)
    return nums


def _last_number(text: str) -> Optional[str]:
    last = None
    for m in _NUM_RE.finditer(text):
        last = m
    if last is None:
        return None
    s = last.group(0)
    # "3.5." at sentence end is matched as 3.5 already; a trailing '.' is never part of the match
    return s


# ----------------------------------------------------------------------------------------------------------
# normalisation (pure python)
# ----------------------------------------------------------------------------------------------------------
_UNITS = frozenset(
    # multi-letter words only: single letters (m, s, g, ...) are too often variables in MATH answers
    """unit units cm centimeter centimeters mm millimeter millimeters meter meters km kilometer kilometers
    inch inches feet foot ft yard yards yd mile miles mph kph degree degrees deg cent cents dollar dollars
    hour hours hr hrs minute minutes mins second seconds sec secs day days week weeks month months year
    years gram grams kg kilogram kilograms pound pounds lb lbs ounce ounces oz liter liters litre litres ml
    gallon gallons square sq cubic people person persons student students page pages book books point points
    ways times percent""".split()
)
_UNIT_NUM_RE = re.compile(r"[-+]?[0-9][0-9.,/]*|[-+]?\.[0-9]+")
_UNIT_POW_RE = re.compile(r"\^\s*\{?\s*[23]\s*\}?")


def _strip_units(s: str) -> str:
    """``'5.4 cents'`` -> ``'5.4'``, ``'864 inches^2'`` -> ``'864'`` (only known unit words; no backtracking)."""
    m = _UNIT_NUM_RE.match(s)
    if not m or m.end() == len(s):
        return s
    rest = _UNIT_POW_RE.sub(" ", s[m.end():])
    words = rest.split()
    if words and len(words) <= 4 and all(w.lower() in _UNITS for w in words):
        return m.group(0)
    return s


_TEXT_CMD_RE = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox|textnormal|operatorname)\s*\{([^{}]*)\}")
_SPACE_CMD_RE = re.compile(r"\\[!,;: ]|\\quad|\\qquad|~")
_LEFT_RIGHT_RE = re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)(?![a-zA-Z])")
_DEGREE_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|\\degree|°")
_FRAC_SHORT_RE = re.compile(r"\\frac\s*(\d)\s*(\d)")
_FRAC_SHORT2_RE = re.compile(r"\\frac\s*\{([^{}]*)\}\s*(\d)")
_FRAC_SHORT3_RE = re.compile(r"\\frac\s*(\d)\s*\{")
_SQRT_SHORT_RE = re.compile(r"\\sqrt\s*(\d+|[a-zA-Z])")
_THOUSANDS_RE = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_VAR_PREFIX_RE = re.compile(r"^[a-zA-Z](?:_\{?\w+\}?)?=(?!=)")


def _normalize(s: str) -> str:
    """Cheap canonical form of a LaTeX/plain answer. Bounded work: callers cap ``len(s)``."""
    s = s.strip()
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\displaystyle", "")
    s = _LEFT_RIGHT_RE.sub("", s)
    s = _SPACE_CMD_RE.sub("", s)
    s = _DEGREE_RE.sub("", s)
    s = s.replace("\\%", "").replace("%", "").replace("\\$", "").replace("$", "")
    for _ in range(3):  # unwrap \text{...} (non-nested content), a few levels
        s2 = _TEXT_CMD_RE.sub(r"\1", s)
        if s2 == s:
            break
        s = s2
    s = _strip_units(s)
    s = re.sub(r"\s+", "", s)
    s = _FRAC_SHORT_RE.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_SHORT2_RE.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_SHORT3_RE.sub(r"\\frac{\1}{", s)
    s = _SQRT_SHORT_RE.sub(r"\\sqrt{\1}", s)
    s = s.rstrip(".").rstrip("\\")
    if _THOUSANDS_RE.match(s):
        s = s.replace(",", "")
    return s


_INT_RE = re.compile(r"^[-+]?\d+$")
_DEC_RE = re.compile(r"^[-+]?(?:\d+\.\d*|\.\d+)$")
_SLASH_RE = re.compile(r"^([-+]?\d+)/(\d+)$")
_FRAC_RE = re.compile(r"^([-+]?)\\frac\{([-+]?\d+(?:\.\d+)?)\}\{([-+]?\d+(?:\.\d+)?)\}$")
_MIXED_RE = re.compile(r"^([-+]?)(\d+)\\frac\{(\d+)\}\{(\d+)\}$")


def _dec(s: str) -> Optional[Fraction]:
    if len(s) > _MAX_NUMBER_CHARS:
        return None
    try:
        return Fraction(Decimal(s))
    except (InvalidOperation, ValueError, OverflowError):
        return None


def _to_rational(s: str) -> Optional[Fraction]:
    """Exact value of an integer / decimal / a/b / \\frac{a}{b} / mixed number, else None. Never evals."""
    if not s or len(s) > _MAX_NUMBER_CHARS + 40:
        return None
    if _INT_RE.match(s) or _DEC_RE.match(s):
        return _dec(s)
    m = _SLASH_RE.match(s)
    if m:
        a, b = _dec(m.group(1)), _dec(m.group(2))
        return a / b if a is not None and b else None
    m = _FRAC_RE.match(s)
    if m:
        a, b = _dec(m.group(2)), _dec(m.group(3))
        if a is None or not b:
            return None
        v = a / b
        return -v if m.group(1) == "-" else v
    m = _MIXED_RE.match(s)
    if m:
        w, a, b = _dec(m.group(2)), _dec(m.group(3)), _dec(m.group(4))
        if w is None or a is None or not b:
            return None
        v = w + a / b
        return -v if m.group(1) == "-" else v
    return None


def _variants(s: str, other: str) -> list[str]:
    out = [s]
    if "=" not in other:
        m = _VAR_PREFIX_RE.match(s)
        if m:
            out.append(s[m.end():])
    if s.startswith("x\\in"):
        out.append(s[4:])
    return out


def _fast_compare(pred: str, ref: str) -> Optional[bool]:
    """True/False when decidable without a CAS, else None."""
    p, r = _normalize(pred), _normalize(ref)
    pv, rv = _variants(p, r), _variants(r, p)
    for a in pv:
        for b in rv:
            if a == b:
                return True
    ra = [x for x in (_to_rational(a) for a in pv) if x is not None]
    rb = [x for x in (_to_rational(b) for b in rv) if x is not None]
    if ra and rb:
        return any(x == y for x in ra for y in rb)
    return None


# ----------------------------------------------------------------------------------------------------------
# math-verify helper processes with a hard deadline
# ----------------------------------------------------------------------------------------------------------
class _Timeout(Exception):
    pass


_WORKER_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_mv_worker.py")


class _Worker:
    """One helper process. Used by one thread at a time (handed out by ``_Pool``)."""

    def __init__(self) -> None:
        self.proc: Optional[subprocess.Popen] = None
        self.ready = False
        self._buf = b""

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        env = dict(os.environ)
        env.setdefault("PYTHONHASHSEED", "0")
        self.proc = subprocess.Popen(
            [sys.executable, "-P", "-u", _WORKER_PATH],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            close_fds=True,
        )
        self.ready = False
        self._buf = b""

    def kill(self) -> None:
        p, self.proc = self.proc, None
        self.ready = False
        self._buf = b""
        if p is not None:
            try:
                p.kill()
            except Exception:
                pass
            try:
                p.wait(timeout=2)
            except Exception:
                pass
            for f in (p.stdin, p.stdout):
                try:
                    if f:
                        f.close()
                except Exception:
                    pass

    def _readline(self, deadline: float) -> dict:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Timeout()
            r, _, _ = select.select([fd], [], [], remaining)
            if not r:
                raise _Timeout()
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError("math-verify worker exited")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def wait_ready(self, deadline: float) -> None:
        self.start()
        if not self.ready:
            msg = self._readline(deadline)
            if not msg.get("ready"):
                raise RuntimeError("math-verify worker sent no ready message")
            self.ready = True

    def request(self, gold: str, pred: str, deadline: float) -> dict:
        self.wait_ready(deadline)
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"gold": gold, "pred": pred}) + "\n").encode())
        self.proc.stdin.flush()
        return self._readline(deadline)


class _Pool:
    def __init__(self, n: int) -> None:
        self.n = max(1, int(n))
        self.idle: "queue.Queue[_Worker]" = queue.Queue()
        self.all = [_Worker() for _ in range(self.n)]
        for w in self.all:
            self.idle.put(w)

    def call(self, gold: str, pred: str, deadline: float) -> dict:
        try:
            w = self.idle.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise _Timeout() from None
        try:
            return w.request(gold, pred, deadline)
        except _Timeout:
            w.kill()
            w.start()  # restart in the background; ready by the next call
            raise
        except Exception:
            w.kill()
            w.start()
            raise
        finally:
            self.idle.put(w)

    def warmup(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        taken: list[_Worker] = []
        try:
            for _ in range(self.n):  # take every worker so no request reads its pipe meanwhile
                taken.append(self.idle.get(timeout=max(0.0, deadline - time.monotonic())))
                taken[-1].start()
            for w in taken:
                w.wait_ready(deadline)
        except (_Timeout, queue.Empty):
            raise TimeoutError(f"math-verify worker not ready within {timeout_s}s") from None
        finally:
            for w in taken:
                self.idle.put(w)

    def close(self) -> None:
        for w in self.all:
            w.kill()


_POOL: Optional[_Pool] = None
_POOL_LOCK = threading.Lock()


def _pool() -> _Pool:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = _Pool(int(os.environ.get("ASCL_MATH_WORKERS", "1")))
        return _POOL


def set_math_workers(n: int) -> None:
    """Use ``n`` helper processes in this Python process (closes the current ones)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is not None:
            _POOL.close()
        _POOL = _Pool(n)


def warmup(timeout_s: float = 60.0) -> None:
    """Start the math-verify helper process(es) and wait until they are ready."""
    _pool().warmup(timeout_s)


@atexit.register
def _close_pool() -> None:
    if _POOL is not None:
        _POOL.close()


# ----------------------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------------------
# answers a CAS would spend seconds or gigabytes on, and that never are a MATH final answer: power towers
# (an exponent that itself has an exponent), 7+ digit exponents, factorials of big numbers or of
# expressions, big operators. Scored 0.0 without calling the library.
_EXPENSIVE_RE = re.compile(
    r"\^\s*\{[^{}]*\^|\^\s*\{?\s*[-+]?\d{7,}|\*\*[^*]*\*\*|(?:\d{4,}|[)}])\s*!|\\(?:sum|prod|int|iint|oint|lim)(?![a-zA-Z])"
)
_SUSPICIOUS_RE = re.compile(r"__|\bimport\b|\blambda\b|\bexec\b|\beval\b|\bgetattr\b|\bsubprocess\b|\bos\.")


def _check_kind(kind: str) -> None:
    if kind not in MATH_KINDS:
        raise ValueError(f"verify_math: unknown kind={kind!r}, expected one of {MATH_KINDS}")


def verify_math_ex(response: str, reference: str, kind: str, timeout_s: float = 5.0) -> MathResult:
    """Like ``verify_math`` but returns a ``MathResult`` with the extracted answer and how it was decided."""
    _check_kind(kind)
    if not isinstance(response, str) or not isinstance(reference, str):
        raise TypeError("verify_math: response and reference must be str")
    if not timeout_s or timeout_s <= 0:
        raise ValueError(f"verify_math: timeout_s must be > 0, got {timeout_s!r}")
    deadline = time.monotonic() + float(timeout_s)

    if kind == "gsm8k":
        ref = _gsm8k_reference(reference)
        pred = extract_gsm8k_answer(response)
        if pred is None:
            return MathResult(0.0, None, ref, "no_answer")
        rref = _to_rational(_normalize(ref))
        rpred = _to_rational(_normalize(pred))
        if rref is None:
            nums = _numbers(ref)
            rref = _to_rational(nums[0].replace(",", "")) if nums else None
        if rref is not None and rpred is not None:
            return MathResult(float(rref == rpred), pred, ref, "fast_numeric")
        eq = _normalize(pred) == _normalize(ref)
        return MathResult(float(eq), pred, ref, "fast_equal")

    # kind == "math"
    ref = last_boxed(reference) if "\\boxed" in reference or "\\fbox" in reference else None
    ref = (ref if ref is not None else reference).strip()
    pred = last_boxed(response)
    if pred is not None:
        if len(pred) > max(_MAX_ANSWER_CHARS, 4 * len(ref)):
            return MathResult(0.0, pred[:100], ref, "too_long")
        fast = _fast_compare(pred, ref)
        if fast is not None:
            return MathResult(float(fast), pred, ref, "fast_equal" if fast else "fast_numeric")
        pred_doc = "\\boxed{" + pred + "}"
    else:
        pred_doc = response[-_TAIL_CHARS:]
    if len(ref) > _MAX_ANSWER_CHARS:
        return MathResult(0.0, pred, ref[:100], "too_long")
    if pred is not None and _EXPENSIVE_RE.search(pred) and not _EXPENSIVE_RE.search(ref):
        return MathResult(0.0, pred[:200], ref, "too_expensive")
    if _SUSPICIOUS_RE.search(pred_doc):
        # never needed for a math answer; keep such text away from any parser
        return MathResult(0.0, pred, ref, "error", error="suspicious tokens in answer")
    try:
        rep = _pool().call("\\boxed{" + ref + "}", pred_doc, deadline)
    except _Timeout:
        return MathResult(0.0, pred, ref, "timeout", timed_out=True, error=f"math-verify exceeded {timeout_s}s")
    except Exception as e:  # worker died (e.g. memory cap): the answer is not verified
        return MathResult(0.0, pred, ref, "error", error=f"{type(e).__name__}: {e}")
    if not rep.get("ok"):
        return MathResult(0.0, pred, ref, "math_verify", error=str(rep.get("error", "")))
    return MathResult(1.0 if rep.get("equal") else 0.0, pred, ref, "math_verify")


def verify_math(response: str, reference: str, kind: str, timeout_s: float = 5.0) -> float:
    """1.0 if ``response``'s final answer matches ``reference`` (see module doc), else 0.0.

    ``kind``: ``gsm8k`` | ``math`` (ValueError otherwise). ``timeout_s``: hard wall-clock limit of the call,
    from any thread; on timeout the answer scores 0.0.
    """
    return verify_math_ex(response, reference, kind, timeout_s).score
