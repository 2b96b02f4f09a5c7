"""Subprocess that runs math-verify's LaTeX parse + verify for ``ascl_ray.reward.math``.

Started by ``ascl_ray.reward.math`` as ``python -P -u _mv_worker.py`` (``-P``: this folder is not put on
``sys.path``, so ``ascl_ray/reward/math.py`` cannot shadow the stdlib ``math``). It imports nothing from
``ascl_ray``. The parent enforces a hard deadline per request by killing this process, which works from
any thread of the parent (math-verify's own ``signal.alarm`` timeout only works in a main thread, so it is
disabled here).

Safety:
  * only ``LatexExtractionConfig`` is used (a grammar-based LaTeX parser). math-verify's
    ``ExprExtractionConfig`` calls ``sympy.parse_expr``, which ``eval``s its input, and is never used;
  * ``sympy.parsing.sympy_parser.eval_expr`` (the one place sympy ``eval``s a string, reached by
    ``parse_expr`` and ``sympify(str)``) is wrapped so that it only accepts the numeric-literal code the
    LaTeX parser itself produces (``Integer (12 )``, ``Float ('1.5' )``) and raises on anything else, so no
    other string can be evaluated as Python in this process;
  * a watchdog thread exits when the parent process is gone (no orphan left computing);
  * the address space is capped (``ASCL_MATH_WORKER_MEM_MB``, default 3072) so inputs like
    ``10^{10^{10}}`` fail with MemoryError instead of eating the machine.

Protocol: one JSON object per line. First line written: ``{"ready": true}``. Requests
``{"gold": str, "pred": str}`` (strings are LaTeX-bearing text; gold/pred are passed to
``math_verify.parse``), replies ``{"ok": bool, "equal": bool, "error": str}``.
"""

from __future__ import annotations

import json
import os
import re
import sys


def _limit_memory() -> None:
    try:
        import resource

        mb = int(os.environ.get("ASCL_MATH_WORKER_MEM_MB", "3072"))
        if mb > 0:
            lim = mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    except Exception:  # pragma: no cover - platform without RLIMIT_AS
        pass


# The only code sympy needs to eval on the LaTeX path: ``sympy.Number("12")`` -> sympify -> parse_expr ->
# eval("Integer (12 )"). Anything else is refused.
_ALLOWED_CODE = re.compile(r"(?:Integer|Float|Rational) ?\( ?'?[0-9.]+(?:[eE][-+]?[0-9]+)?'? ?(?:, ?'?[0-9]+'? ?)?\)")


def _forbid_eval() -> None:
    import sympy.parsing.sympy_parser as sp

    orig = sp.eval_expr

    def _guarded_eval(code, local_dict, global_dict):
        if not isinstance(code, str) or not _ALLOWED_CODE.fullmatch(code.strip()):
            raise ValueError("string evaluation is disabled in the math-verify worker")
        return orig(code, local_dict, global_dict)

    sp.eval_expr = _guarded_eval


def _watch_parent() -> None:
    """Exit when the parent process is gone, even in the middle of a long computation."""
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def main() -> None:
    _watch_parent()
    out = sys.stdout
    # anything a library prints must not corrupt the protocol stream
    sys.stdout = sys.stderr
    _limit_memory()
    import logging

    logging.disable(logging.CRITICAL)
    from math_verify import LatexExtractionConfig, parse, verify

    _forbid_eval()
    cfg = [LatexExtractionConfig()]
    # warm the LaTeX grammar so the first real request is fast
    try:
        verify(parse("$\\frac{1}{2}$", extraction_config=cfg, parsing_timeout=None),
               parse("$0.5$", extraction_config=cfg, parsing_timeout=None), timeout_seconds=None)
    except Exception:
        pass
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            gold = parse(req["gold"], extraction_config=cfg, parsing_timeout=None)
            pred = parse(req["pred"], extraction_config=cfg, parsing_timeout=None)
            eq = bool(gold) and bool(pred) and bool(verify(gold, pred, timeout_seconds=None))
            rep = {"ok": True, "equal": eq, "error": ""}
        except MemoryError:
            rep = {"ok": False, "equal": False, "error": "MemoryError"}
        except Exception as e:  # noqa: BLE001 - any library failure is a 'not equal'
            rep = {"ok": False, "equal": False, "error": f"{type(e).__name__}: {str(e)[:200]}"}
        out.write(json.dumps(rep) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
