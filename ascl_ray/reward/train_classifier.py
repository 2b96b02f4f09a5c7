"""Train the ``classifier`` judge's head from a labelled file.

    python -m ascl_ray.reward.train_classifier \\
        --data /work/shared/data/gptfuzz/responses_labeled_train.csv \\
        --text-col Response --label-col label \\
        --prompt-col question --prompt-lookup /work/shared/data/gptfuzz/question_list.csv \\
        --group-col question --input-mode auto \\
        --eval-data /work/shared/data/gptfuzz/responses_labeled_evaluate.csv \\
        --out artifacts/harm_clf

Label 1 = harmful response (``--positive-label`` for other spellings). ``--input-mode auto`` trains on the
response alone and on prompt+response and keeps the one with the better F1 on the held-out slice of the
training file (never the eval file). ``--group-col`` makes that slice group-disjoint (GPTFuzz: by question).
Writes ``head.safetensors`` + ``config.json`` into ``--out``; prints training and (with ``--eval-data``)
evaluation figures, also saved to ``{out}/report.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from ascl_ray.reward.classifier import Features, FeatureSpec, HarmHead, _matvec

__all__ = ["train_classifier", "train_head", "evaluate_head", "load_labelled", "main"]


def _f1_best_threshold(p: Any, y: Any) -> tuple[float, float]:
    best_t, best_f1 = 0.5, -1.0
    for k in range(5, 96):
        t = k / 100
        pred = p >= t
        tp = float((pred & (y == 1)).sum())
        fp = float((pred & (y == 0)).sum())
        fn = float((~pred & (y == 1)).sum())
        f1 = 2 * tp / max(1.0, 2 * tp + fp + fn)
        if f1 > best_f1 + 1e-9:
            best_t, best_f1 = t, f1
    return best_t, best_f1


def _fit_logreg(x: Any, y: Any, l2: float, steps: int = 150) -> tuple[Any, Any]:
    import torch

    torch.manual_seed(0)
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    pos = float(y.sum())
    neg = float(len(y) - pos)
    pw = torch.tensor(neg / max(pos, 1.0))  # class-balanced
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logits = _matvec(x, w) + b
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float(), pos_weight=pw)
        loss = loss + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().clone(), b.detach().clone()


def _rows(x: Any, mask: Any) -> Any:
    return x.select(mask) if isinstance(x, Features) else x[mask]


def train_head(feats: Any, labels: Sequence[int], groups: Optional[Sequence[Any]] = None,
               l2_grid: Sequence[float] = (1e-5, 1e-4), val_frac: float = 0.2,
               spec: Optional[FeatureSpec] = None, seed: int = 0) -> HarmHead:
    """Fit the logistic head on ``feats`` (dense or sparse ``[N, F]``); pick the L2 strength and the F1-best
    threshold on a held-out slice (question-disjoint when ``groups`` is given), then refit on all rows."""
    import random

    import torch

    y = torch.tensor([int(v) for v in labels])
    n = len(y)
    rng = random.Random(seed)
    if groups is not None:
        uniq = sorted(set(groups), key=str)
        rng.shuffle(uniq)
        val_groups = set(uniq[: max(1, int(round(len(uniq) * val_frac)))])
        val_mask = torch.tensor([g in val_groups for g in groups])
    else:
        idx = list(range(n))
        rng.shuffle(idx)
        val_mask = torch.zeros(n, dtype=torch.bool)
        val_mask[idx[: max(1, int(n * val_frac))]] = True
    xtr, xval = _rows(feats, ~val_mask), _rows(feats, val_mask)
    best = None
    for lam in l2_grid:
        w, b = _fit_logreg(xtr, y[~val_mask], lam)
        p = torch.sigmoid(_matvec(xval, w) + b)
        t, f1 = _f1_best_threshold(p, y[val_mask])
        if best is None or f1 > best[2]:
            best = (lam, t, f1)
    lam, thr, val_f1 = best
    w, b = _fit_logreg(feats, y, lam)
    return HarmHead(w, b, float(thr), spec or FeatureSpec(),
                    meta={"l2": lam, "val_f1": round(val_f1, 4), "n_train": n, "n_pos": int(y.sum())})


def load_labelled(path: str, text_col: str, label_col: str, prompt_col: Optional[str] = None,
                  prompt_lookup: Optional[str] = None, group_col: Optional[str] = None,
                  positive_label: Optional[Sequence[str]] = None, limit: Optional[int] = None):
    from ascl_ray.reward.data_io import lookup_prompts, read_table, require_columns, to_binary_labels

    rows = read_table(path, limit)
    require_columns(rows, [text_col, label_col, prompt_col, group_col], path)
    responses = ["" if r[text_col] is None else str(r[text_col]) for r in rows]
    labels = to_binary_labels([r[label_col] for r in rows], positive_label, label_col)
    prompts = [str(r[prompt_col]) for r in rows] if prompt_col else [""] * len(rows)
    if prompt_col and prompt_lookup:
        prompts = lookup_prompts(prompts, prompt_lookup)
    groups = [r[group_col] for r in rows] if group_col else None
    return prompts, responses, labels, groups


def train_classifier(prompts: list[str], responses: list[str], labels: list[int], groups=None, *,
                     input_mode: str = "auto", max_length: int = 64, bow_dim: int = 2**14, minilm: bool = True,
                     refusal_flag: bool = True, cache_dir: Optional[str] = None, encoder: Any = None,
                     log=print):
    """Returns ``(head, encoder, report)``."""
    from ascl_ray.reward.classifier import MiniLMEncoder, build_features

    modes = ["response", "prompt_response"] if input_mode == "auto" else [input_mode]
    if input_mode == "auto" and not any(p for p in prompts):
        modes = ["response"]
    if minilm and encoder is None:
        encoder = MiniLMEncoder(max_length=max_length)
    best = None
    report: dict[str, Any] = {"modes": {}}
    for mode in modes:
        spec = FeatureSpec(minilm=minilm, max_length=max_length, bow_dim=bow_dim, refusal_flag=refusal_flag,
                           input_mode=mode)
        t0 = time.time()
        feats = build_features(spec, prompts, responses, encoder, cache_dir=cache_dir)
        t1 = time.time()
        head = train_head(feats, labels, groups, spec=spec)
        t2 = time.time()
        report["modes"][mode] = {"val_f1": head.meta["val_f1"], "threshold": head.threshold,
                                 "features_s": round(t1 - t0, 1), "fit_s": round(t2 - t1, 1)}
        log(f"[train_classifier] input_mode={mode}: held-out F1={head.meta['val_f1']:.4f} "
            f"threshold={head.threshold:.2f} (features {t1 - t0:.1f}s, fit {t2 - t1:.1f}s)")
        if best is None or head.meta["val_f1"] > best.meta["val_f1"]:
            best = head
    assert best is not None
    best.meta["chosen_by"] = "held-out F1 over input modes " + ",".join(modes)
    report["chosen_mode"] = best.spec.input_mode
    report["spec"] = {"minilm": minilm, "max_length": max_length, "bow_dim": bow_dim, "refusal_flag": refusal_flag}
    return best, encoder, report


def evaluate_head(head, encoder, prompts: list[str], responses: list[str], labels: list[int],
                  cache_dir: Optional[str] = None) -> dict:
    from ascl_ray.reward.classifier import build_features
    from ascl_ray.reward.judge_check import binary_metrics

    feats = build_features(head.spec, prompts, responses, encoder, cache_dir=cache_dir)
    pred = (head.prob(feats) >= head.threshold).tolist()
    return binary_metrics(pred, labels)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ascl_ray.reward.train_classifier", description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--text-col", required=True, help="response column")
    ap.add_argument("--label-col", required=True)
    ap.add_argument("--prompt-col", default=None)
    ap.add_argument("--prompt-lookup", default=None, help="FILE[:KEY_COL:TEXT_COL] mapping prompt ids to text")
    ap.add_argument("--group-col", default=None, help="held-out slice is disjoint in this column")
    ap.add_argument("--positive-label", nargs="*", default=None)
    ap.add_argument("--input-mode", default="auto", choices=("auto", "response", "prompt_response"))
    ap.add_argument("--max-length", type=int, default=64, help="MiniLM tokens per text")
    ap.add_argument("--bow-dim", type=int, default=2**14, help="hashed n-gram features (0: off)")
    ap.add_argument("--no-minilm", action="store_true", help="drop the MiniLM embedding features")
    ap.add_argument("--no-refusal-flag", action="store_true")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--cache-dir", default=None, help="memoise embeddings here")
    ap.add_argument("--eval-data", default=None, help="labelled file with the same columns, for figures")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    try:
        prompts, responses, labels, groups = load_labelled(
            args.data, args.text_col, args.label_col, args.prompt_col, args.prompt_lookup, args.group_col,
            args.positive_label, args.limit)
        ev = None
        if args.eval_data:
            ev = load_labelled(args.eval_data, args.text_col, args.label_col, args.prompt_col, args.prompt_lookup,
                               None, args.positive_label)
    except (FileNotFoundError, KeyError, ValueError) as e:
        print(f"train_classifier: error: {e}", file=sys.stderr)
        return 2
    from ascl_ray.reward.classifier import save_head
    from ascl_ray.reward.judge_check import format_metrics

    head, encoder, report = train_classifier(
        prompts, responses, labels, groups, input_mode=args.input_mode, max_length=args.max_length,
        bow_dim=args.bow_dim, minilm=not args.no_minilm, refusal_flag=not args.no_refusal_flag,
        cache_dir=args.cache_dir)
    save_head(head, args.out)
    print(f"[train_classifier] saved {args.out} (input_mode={head.spec.input_mode}, threshold={head.threshold:.2f})")
    if ev is not None:
        m = evaluate_head(head, encoder, ev[0], ev[1], ev[2], args.cache_dir)
        report["eval"] = {"data": args.eval_data, **m}
        print(format_metrics(m, f"eval on {args.eval_data}"))
    (Path(args.out) / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
