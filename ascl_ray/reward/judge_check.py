"""Agreement of a safety judge with human labels.

    python -m ascl_ray.reward.judge_check --judge refusal|classifier --data FILE \\
        --prompt-col C --response-col C --label-col C [--positive-label V ...] [--limit N] \\
        [--prompt-lookup FILE[:KEY:TEXT]] [--target unsafe|refusal] [--model-dir DIR]

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

__all__ = ["binary_metrics", "format_metrics", "run_check", "main"]


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


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ascl_ray.reward.judge_check", description=__doc__.split("\n")[0])
    ap.add_argument("--judge", required=True, help="registered judge name (refusal, classifier, ...)")
    ap.add_argument("--data", required=True, help="CSV or JSONL file")
    ap.add_argument("--prompt-col", default=None, help="prompt column (optional)")
    ap.add_argument("--response-col", required=True)
    ap.add_argument("--label-col", required=True)
    ap.add_argument("--positive-label", nargs="*", default=None,
                    help="label values counted as positive (default: 1/true/yes/unsafe/harmful)")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--prompt-lookup", default=None, help="FILE[:KEY_COL:TEXT_COL] mapping prompt ids to text")
    ap.add_argument("--target", choices=("unsafe", "refusal"), default="unsafe")
    ap.add_argument("--model-dir", default=None, help="classifier judge: trained head folder")
    ap.add_argument("--option", action="append", default=[], help="extra judge option KEY=JSON_VALUE")
    args = ap.parse_args(argv)

    from ascl_ray.reward.data_io import lookup_prompts, read_table, require_columns, to_binary_labels
    from ascl_ray.reward.judges import get_judge

    try:
        rows = read_table(args.data, args.limit)
        require_columns(rows, [args.prompt_col, args.response_col, args.label_col], args.data)
        prompts = [str(r[args.prompt_col]) if args.prompt_col else "" for r in rows]
        if args.prompt_lookup:
            prompts = lookup_prompts(prompts, args.prompt_lookup)
        responses = ["" if r[args.response_col] is None else str(r[args.response_col]) for r in rows]
        labels = to_binary_labels([r[args.label_col] for r in rows], args.positive_label, args.label_col)
    except (FileNotFoundError, KeyError, ValueError) as e:
        print(f"judge_check: error: {e}", file=sys.stderr)
        return 2
    opts: dict[str, Any] = {}
    for kv in args.option:
        k, _, v = kv.partition("=")
        try:
            opts[k] = json.loads(v)
        except json.JSONDecodeError:
            opts[k] = v
    if args.model_dir:
        opts["model_dir"] = args.model_dir
    judge = get_judge(args.judge, **opts)
    m = run_check(judge, prompts, responses, labels, args.target)
    print(format_metrics(m, f"judge={args.judge} target={args.target} data={args.data}"))
    print(json.dumps({"judge": args.judge, "target": args.target, **m}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
