"""Agreement of one or more safety judges with human labels, side by side.

    python -m ascl_ray.reward.judge_check --judge refusal,refusal_robust,classifier --data FILE \\
        --prompt-col C --response-col C --label-col C [--positive-label V ...] [--limit N] \\
        [--prompt-lookup FILE[:KEY:TEXT]] [--target unsafe|refusal] [--model-dir DIR] \\
        [--option KEY=JSON] [--option JUDGE.KEY=JSON]

Options: ``--model-dir`` and ``--option KEY=V`` go to every listed judge that takes that option;
``--option JUDGE.KEY=V`` to that judge only. An option no listed judge takes (or that the named judge does not
take), an unknown judge or a judge that cannot be built is a one-line error (exit 2), e.g.
``judge_check: error: judge 'refusal' does not take option 'model_dir' (from --model-dir); its options:
compliance_safe``.

Reads CSV or JSONL. The judge's prediction is compared with the binary label:
  ``--target unsafe`` (default): positive = the response is harmful/unsafe (judge ``safe`` is False);
  ``--target refusal``: positive = the response is a refusal (judge ``refusal`` is True).
Prints accuracy, precision, recall, F1 and the confusion matrix (and a JSON line with the same figures).
``binary_metrics(pred, gold)`` is the pure metric function.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Optional, Sequence

__all__ = ["binary_metrics", "format_metrics", "format_rows", "run_check", "judge_option_sets", "main"]


def binary_metrics(pred: Sequence[Any], gold: Sequence[Any]) -> dict:
    """Accuracy/precision/recall/F1 and confusion counts for binary predictions (truthy = positive).

    Returns ``{n, tp, fp, fn, tn, accuracy, precision, recall, f1, confusion}`` with
    ``confusion = [[tn, fp], [fn, tp]]`` (rows: gold 0/1, columns: predicted 0/1). Empty ratios are 0.0.
    """
    pred, gold = list(pred), list(gold)
    if len(pred) != len(gold):
        raise ValueError(f"binary_metrics: {len(pred)} predictions but {len(gold)} labels")
    tp = fp = fn = tn = 0
    for p, g in zip(pred, gold):
        p, g = bool(p), bool(g)
        if p and g:
            tp += 1
        elif p:
            fp += 1
        elif g:
            fn += 1
        else:
            tn += 1
    n = len(pred)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return {
        "n": n, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "accuracy": (tp + tn) / n if n else 0.0,
        "precision": precision, "recall": recall, "f1": f1,
        "confusion": [[tn, fp], [fn, tp]],
    }


def format_metrics(m: dict, title: str = "") -> str:
    lines = [title] if title else []
    lines += [
        f"n={m['n']}  accuracy={m['accuracy']:.4f}  precision={m['precision']:.4f}  "
        f"recall={m['recall']:.4f}  f1={m['f1']:.4f}",
        "confusion matrix (rows gold, cols pred):",
        "            pred=0  pred=1",
        f"  gold=0  {m['tn']:7d} {m['fp']:7d}",
        f"  gold=1  {m['fn']:7d} {m['tp']:7d}",
    ]
    return "\n".join(lines)


def run_check(judge: Any, prompts: list[str], responses: list[str], labels: list[int], target: str = "unsafe",
              batch_size: int = 256) -> dict:
    pred: list[bool] = []
    for s in range(0, len(responses), batch_size):
        verdicts = judge.judge(prompts[s : s + batch_size], responses[s : s + batch_size])
        pred += [v.refusal if target == "refusal" else (not v.safe) for v in verdicts]
    return binary_metrics(pred, labels)


def format_rows(results: list[tuple[str, dict]]) -> str:
    """One row per judge: ``judge  n  accuracy  precision  recall  f1  tp  fp  fn  tn``."""
    w = max([5] + [len(n) for n, _ in results])
    lines = [f"{'judge':{w}s} {'n':>6s} {'accuracy':>9s} {'precision':>9s} {'recall':>7s} {'f1':>7s} "
             f"{'tp':>6s} {'fp':>6s} {'fn':>6s} {'tn':>6s}"]
    for name, m in results:
        lines.append(f"{name:{w}s} {m['n']:6d} {m['accuracy']:9.4f} {m['precision']:9.4f} {m['recall']:7.4f} "
                     f"{m['f1']:7.4f} {m['tp']:6d} {m['fp']:6d} {m['fn']:6d} {m['tn']:6d}")
    return "\n".join(lines)


def judge_option_sets(judges: list[str], common: dict[str, tuple[Any, str]],
                      targeted: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Options of each judge. ``common``: ``{key: (value, flag)}`` for every judge that takes ``key``
    (``JudgeOptionError`` if none does); ``targeted``: ``{judge: {key: value}}`` (error if it does not take it)."""
    from ascl_ray.reward.judge_base import JudgeOptionError, check_options, judge_options

    out: dict[str, dict[str, Any]] = {j: {} for j in judges}
    for j in targeted:
        if j not in out:
            raise JudgeOptionError(f"--option {j}.{next(iter(targeted[j]))}: judge {j!r} is not in --judge {','.join(judges)}")
    known = {j: judge_options(j) for j in judges}  # KeyError for an unknown judge
    for k, (v, flag) in common.items():
        takers = [j for j in judges if known[j] is None or k in known[j]]
        if not takers:
            j = judges[0]
            raise JudgeOptionError(f"judge {j!r} does not take option {k!r} (from {flag}); its options: "
                                   f"{', '.join(known[j] or []) or '(none)'}" if len(judges) == 1 else
                                   f"no judge of {','.join(judges)} takes option {k!r} (from {flag})")
        for j in takers:
            out[j][k] = v
    for j, kv in targeted.items():
        check_options(j, kv)
        out[j].update(kv)
    return out


def _parse_value(v: str) -> Any:
    try:
        return json.loads(v)
    except json.JSONDecodeError:
        return v


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ascl_ray.reward.judge_check", description=__doc__.split("\n")[0])
    ap.add_argument("--judge", required=True, action="append",
                    help="registered judge name(s), comma-separated or repeated (refusal,classifier,...)")
    ap.add_argument("--data", required=True, help="CSV or JSONL file")
    ap.add_argument("--prompt-col", default=None, help="prompt column (optional)")
    ap.add_argument("--response-col", required=True)
    ap.add_argument("--label-col", required=True)
    ap.add_argument("--positive-label", nargs="*", default=None,
                    help="label values counted as positive (default: 1/true/yes/unsafe/harmful)")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--prompt-lookup", default=None, help="FILE[:KEY_COL:TEXT_COL] mapping prompt ids to text")
    ap.add_argument("--target", choices=("unsafe", "refusal"), default="unsafe")
    ap.add_argument("--model-dir", default=None, help="head folder, for the judges that take model_dir")
    ap.add_argument("--option", action="append", default=[],
                    help="judge option KEY=JSON_VALUE (every judge taking it) or JUDGE.KEY=JSON_VALUE")
    args = ap.parse_args(argv)

    from ascl_ray.reward.data_io import lookup_prompts, read_table, require_columns, to_binary_labels
    from ascl_ray.reward.judges import get_judge

    def fail(msg: str) -> int:
        print(f"judge_check: error: {msg}", file=sys.stderr)
        return 2

    names = [n.strip() for j in args.judge for n in j.split(",") if n.strip()]
    common: dict[str, tuple[Any, str]] = {}
    targeted: dict[str, dict[str, Any]] = {}
    for kv in args.option:
        k, sep, v = kv.partition("=")
        if not sep or not k:
            return fail(f"--option {kv!r}: expected KEY=VALUE or JUDGE.KEY=VALUE")
        if "." in k:
            j, _, k = k.partition(".")
            targeted.setdefault(j, {})[k] = _parse_value(v)
        else:
            common[k] = (_parse_value(v), f"--option {kv}")
    if args.model_dir:
        common["model_dir"] = (args.model_dir, "--model-dir")
    try:
        opts = judge_option_sets(names, common, targeted)
        judges = [(n, get_judge(n, **opts[n])) for n in names]
    except KeyError as e:
        return fail(str(e.args[0]) if e.args else str(e))
    except (ValueError, FileNotFoundError) as e:
        return fail(str(e).splitlines()[0])
    try:
        rows = read_table(args.data, args.limit)
        require_columns(rows, [args.prompt_col, args.response_col, args.label_col], args.data)
        prompts = [str(r[args.prompt_col]) if args.prompt_col else "" for r in rows]
        if args.prompt_lookup:
            prompts = lookup_prompts(prompts, args.prompt_lookup)
        responses = ["" if r[args.response_col] is None else str(r[args.response_col]) for r in rows]
        labels = to_binary_labels([r[args.label_col] for r in rows], args.positive_label, args.label_col)
    except (FileNotFoundError, KeyError, ValueError) as e:
        return fail(str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e))
    results = [(n, run_check(j, prompts, responses, labels, args.target)) for n, j in judges]
    print(f"target={args.target} data={args.data}")
    print(format_rows(results))
    if len(results) == 1:
        print(format_metrics(results[0][1]))
    for n, m in results:
        print(json.dumps({"judge": n, "target": args.target, **m}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
