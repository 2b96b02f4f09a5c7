"""How well do the judges generalise? Every judge scored on labelled sources it was *not* developed on.

    python -m ascl_ray.reward.judge_study [--train-heads] [--loso] [--speed] [--out runs/judge_study]

The split (``SPLIT``) is fixed here and in the README: each judge's *development* sources are the ones its
patterns were written against (errors read) or its head was trained / thresholded on. Figures on them are
printed in a separate "development" table and are never its accuracy. Held-out sources (``HELD_OUT``) were
never used to write, train, threshold or select anything.

Tasks (``task_for``): refusal judges are scored on refusal labels where a source has them (XSTest, CoCoNot)
and, on sources of harmful prompts only (GPTFuzz, JBB), on harm labels through their safe verdict (refusal =>
safe); harm classifiers are scored on harm labels. HH-RLHF is pairwise: the judge's safety score of the
chosen (less harmful) answer should beat the rejected one's (ties count one half).

``--train-heads`` trains the shipped heads (``heads.py``: ``harm_mix``, ``refusal_mix``) on their training
mix and writes them into ``ascl_ray/reward/heads/`` (bit-identical on rerun); ``classifier_gptfuzz`` (the
previous recipe: GPTFuzz train only) is trained into the cache on first use, for comparison. ``--loso`` adds leave-one-source-out tables: for each
source, a head trained on all the *other* sources (threshold by CV on them), scored on it. ``--speed`` times
each judge in this process (1 thread, embeddings not cached). MiniLM embeddings of the data are cached in
``.cache/judge_study/emb`` (first run ~4 min on one core).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

__all__ = ["SPLIT", "HELD_OUT", "HEAD_TRAIN", "task_for", "evaluate", "pairwise", "main"]

# development sources of each judge (patterns written against them / head trained + thresholded on them)
SPLIT: dict[str, tuple[str, ...]] = {
    "refusal": ("xstest_gpt4", "gptfuzz_train"),
    "refusal_robust": ("xstest_gpt4", "gptfuzz_train"),
    "classifier": ("gptfuzz_train", "xstest_gpt4"),
    "classifier_gptfuzz": ("gptfuzz_train", "xstest_gpt4"),  # xstest: through the refusal-pattern features
}
HELD_OUT = ("gptfuzz_eval", "jbb", "coconot_chosen", "hh_rlhf")
ALL_SOURCES = ("xstest_gpt4", "gptfuzz_train", "gptfuzz_eval", "jbb", "coconot_chosen", "moderation", "hh_rlhf")
# shipped heads: label and training mix (GPTFuzz rows get refusal := not harmful for the refusal head)
HEAD_TRAIN: dict[str, dict] = {
    "harm_mix": {"label": "harmful", "sources": ("gptfuzz_train", "xstest_gpt4")},
    "refusal_mix": {"label": "refusal", "sources": ("xstest_gpt4", "gptfuzz_train")},
}
HARMFUL_PROMPT_SOURCES = ("gptfuzz_train", "gptfuzz_eval", "jbb")
REFUSAL_JUDGES = ("refusal", "refusal_robust", "refusal_v0")
LABELLER = {"xstest_gpt4": "human", "gptfuzz_train": "human", "gptfuzz_eval": "human", "jbb": "LLM judge",
            "coconot_chosen": "by construction", "moderation": "human", "hh_rlhf": "crowd, pairwise"}
CACHE = Path(".cache/judge_study")


def task_for(judge: str, source: str) -> Optional[str]:
    """``refusal`` / ``harmful`` / ``pairwise`` / None (not applicable)."""
    if source == "hh_rlhf":
        return "pairwise"
    if judge in REFUSAL_JUDGES:
        if source in ("xstest_gpt4", "coconot_chosen"):
            return "refusal"
        return "harmful" if source in HARMFUL_PROMPT_SOURCES else None
    return "harmful"


def label_of(e: Any, label: str) -> Optional[int]:
    """An example's label for ``label``; GPTFuzz / JBB rows (harmful prompts) give refusal := not harmful."""
    v = getattr(e, label)
    if v is None and label == "refusal" and e.source in HARMFUL_PROMPT_SOURCES + ("gptfuzz",):
        return 1 - int(e.harmful)
    return v


def evaluate(judge: Any, rows: list, task: str) -> dict:
    from ascl_ray.reward.judge_check import binary_metrics

    v = judge.judge([e.prompt for e in rows], [e.response for e in rows])
    if task == "refusal":
        return binary_metrics([x.refusal for x in v], [e.refusal for e in rows])
    return binary_metrics([not x.safe for x in v], [e.harmful for e in rows])


def pairwise(judge: Any, pairs: list) -> dict:
    p = [x.prompt for x in pairs]
    c = judge.judge(p, [x.chosen for x in pairs])
    r = judge.judge(p, [x.rejected for x in pairs])
    win = sum(a.score > b.score for a, b in zip(c, r))
    tie = sum(a.score == b.score for a, b in zip(c, r))
    return {"n": len(pairs), "accuracy": (win + 0.5 * tie) / len(pairs), "wins": win, "ties": tie, "f1": None}


def _encoder():
    from ascl_ray.reward.classifier import MiniLMEncoder
    from ascl_ray.reward.heads import CachedEncoder

    return CachedEncoder(MiniLMEncoder(max_length=64, num_threads=1), str(CACHE / "emb"))


def train_heads(S: dict, enc: Any, out_root: Path, log=print) -> dict[str, str]:
    """Train the ``HEAD_TRAIN`` heads into ``out_root/<name>``."""
    from ascl_ray.reward.classifier import FeatureSpec, save_head
    from ascl_ray.reward.heads import concat_features, featurize, train_mix
    spec = FeatureSpec(max_length=64, pattern_flags=True)
    dirs = {}
    for name, cfg in HEAD_TRAIN.items():
        rows = [e for s in cfg["sources"] for e in S[s]]
        feats = concat_features([featurize(spec, S[s], enc) for s in cfg["sources"]])
        y = [label_of(e, cfg["label"]) for e in rows]
        log(f"[judge_study] training {name} on {', '.join(cfg['sources'])} ({len(rows)} rows, label {cfg['label']})")
        head = train_mix(feats, y, [e.source for e in rows], [e.group for e in rows], spec, log=log)
        head.meta.update(label=cfg["label"], command="python -m ascl_ray.reward.judge_study --train-heads")
        save_head(head, str(out_root / name))
        dirs[name] = str(out_root / name)
        for f in (out_root / name).iterdir():
            f.chmod(0o644)
    return dirs


def gptfuzz_baseline(S: dict, enc: Any, log=print) -> str:
    """The previous ``classifier`` recipe (``train_classifier`` on GPTFuzz train only, response input), trained
    into the cache once, for comparison."""
    from ascl_ray.reward.classifier import save_head
    from ascl_ray.reward.train_classifier import train_classifier

    d = CACHE / "heads" / "gptfuzz_only"
    if not (d / "head.safetensors").is_file():
        tr = S["gptfuzz_train"]
        head, _, _ = train_classifier([e.prompt for e in tr], [e.response for e in tr], [e.harmful for e in tr],
                                      [e.group for e in tr], input_mode="response", max_length=64, encoder=enc,
                                      log=log)
        save_head(head, str(d))
    return str(d)


def loso(S: dict, enc: Any, label: str, sources: tuple[str, ...], l2: float, log=print) -> list[dict]:
    """Leave-one-source-out rows for a head predicting ``label`` (GPTFuzz train + eval count as one source)."""
    from ascl_ray.reward.classifier import FeatureSpec
    from ascl_ray.reward.heads import concat_features, featurize, predict_proba, train_mix
    from ascl_ray.reward.judge_check import binary_metrics

    spec = FeatureSpec(max_length=64, pattern_flags=True)
    pool = {s: (S["gptfuzz_train"] + S["gptfuzz_eval"] if s == "gptfuzz" else S[s]) for s in sources}
    feats = {s: concat_features([featurize(spec, S[x], enc) for x in (("gptfuzz_train", "gptfuzz_eval")
                                                                    if s == "gptfuzz" else (s,))]) for s in sources}
    out = []
    for held in sources:
        rest = [s for s in sources if s != held]
        rows = [e for s in rest for e in pool[s]]
        head = train_mix(concat_features([feats[s] for s in rest]), [label_of(e, label) for e in rows],
                         [e.source for e in rows], [e.group for e in rows], spec, l2_grid=(l2,), k=3,
                         log=lambda *a: None)
        p = predict_proba(feats[held], head.weight, head.bias)
        m = binary_metrics((p >= head.threshold).tolist(), [label_of(e, label) for e in pool[held]])
        out.append({"label": label, "held_out": held, "trained_on": rest, "threshold": head.threshold, **m})
        log(f"[loso {label}] held out {held}: acc={m['accuracy']:.4f} f1={m['f1']:.4f} n={m['n']}")
    return out


def _fmt(x: Any) -> str:
    return "—" if x is None else f"{x:.3f}"


def _table(rows: list[dict]) -> list[str]:
    lines = ["| judge | source (labels) | task | n | accuracy | F1 |", "| --- | --- | --- | ---: | ---: | ---: |"]
    for r in rows:
        f1 = None if r["task"] == "pairwise" or not (r.get("tp", 0) + r.get("fn", 0)) else r["f1"]
        lines.append(f"| {r['judge']} | {r['source']} ({LABELLER[r['source']]}) | {r['task']} | {r['n']} | "
                     f"{_fmt(r['accuracy'])} | {_fmt(f1)} |")
    return lines


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ascl_ray.reward.judge_study", description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default="runs/judge_study")
    ap.add_argument("--judges", default="refusal,refusal_robust,classifier,classifier_gptfuzz")
    ap.add_argument("--train-heads", action="store_true", help="(re)train the shipped heads first")
    ap.add_argument("--heads-out", default=None, help="with --train-heads: write the heads here instead of "
                    "ascl_ray/reward/heads (and evaluate those)")
    ap.add_argument("--loso", action="store_true", help="add leave-one-source-out tables for the heads")
    ap.add_argument("--speed", action="store_true", help="time each judge (1 thread, uncached embeddings)")
    ap.add_argument("--refusal-module", default=None,
                    help="also score detect_refusal from this file as judge 'refusal_v0' (e.g. an older version)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from ascl_ray.reward.heads import HEADS_DIR
    from ascl_ray.reward.judges import RefusalJudge, get_judge
    from ascl_ray.reward.sources import load_all

    try:
        S = load_all(ALL_SOURCES, args.data_dir)
    except FileNotFoundError as e:
        print(f"judge_study: error: {e}", file=sys.stderr)
        return 2
    names = args.judges.split(",")
    learned = args.train_heads or args.loso or any(n in ("refusal_robust", "classifier", "classifier_gptfuzz")
                                                   for n in names)
    enc = None
    if learned:
        import torch

        torch.set_num_threads(1)
        enc = _encoder()
    heads_dir = Path(args.heads_out) if args.heads_out else HEADS_DIR
    if args.train_heads:
        train_heads(S, enc, heads_dir)
    judges: dict[str, Any] = {}
    for name in names:
        if name == "classifier_gptfuzz":
            judges[name] = get_judge("classifier", model_dir=gptfuzz_baseline(S, enc), encoder=enc)
        elif name in ("refusal_robust", "classifier"):
            head = heads_dir / ("refusal_mix" if name == "refusal_robust" else "harm_mix")
            judges[name] = get_judge(name, encoder=enc, model_dir=str(head))
        else:
            judges[name] = get_judge(name)
    if args.refusal_module:
        import importlib.util

        spec = importlib.util.spec_from_file_location("refusal_v0", args.refusal_module)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)

        class V0(RefusalJudge):
            def _judge(self, prompts, responses):
                import ascl_ray.reward.judges as jm

                orig, jm.detect_refusal = jm.detect_refusal, mod.detect_refusal
                try:
                    return super()._judge(prompts, responses)
                finally:
                    jm.detect_refusal = orig

        judges = {"refusal_v0": V0(), **judges}
        SPLIT["refusal_v0"] = ("xstest_gpt4",)
    held, dev = [], []
    for jn, j in judges.items():
        for src in ALL_SOURCES:
            task = task_for(jn, src)
            if task is None:
                continue
            m = pairwise(j, S[src]) if task == "pairwise" else evaluate(j, S[src], task)
            row = {"judge": jn, "source": src, "task": task, **m}
            (dev if src in SPLIT.get(jn, ()) else held).append(row)
            print(f"[judge_study] {jn:18s} {src:15s} {task:8s} n={m['n']:5d} acc={m['accuracy']:.4f}"
                  f"{'' if m['f1'] is None else ' f1=%.4f' % m['f1']}"
                  f"{'  (development)' if src in SPLIT.get(jn, ()) else ''}", flush=True)
    report: dict[str, Any] = {"split": {"development": SPLIT, "held_out": HELD_OUT, "head_train": HEAD_TRAIN},
                              "held_out": held, "development": dev}
    lines = ["## Held-out sources (never used to write, train or threshold the judge)", ""] + _table(held)
    lines += ["", "## Development sources (not accuracy: the judge was written / trained on them)", ""] + _table(dev)
    if args.loso:
        from ascl_ray.reward.classifier import load_head

        l2s = {n: load_head(str(heads_dir / n)).meta.get("l2", 1e-3) for n in HEAD_TRAIN}
        report["loso"] = (loso(S, enc, "harmful", ("xstest_gpt4", "gptfuzz", "jbb", "coconot_chosen", "moderation"),
                               l2s["harm_mix"])
                          + loso(S, enc, "refusal", ("xstest_gpt4", "gptfuzz", "jbb", "coconot_chosen"),
                                 l2s["refusal_mix"]))
        lines += ["", "## Leave-one-source-out heads (trained on the other sources)", "",
                  "| head label | held-out source | n | accuracy | F1 | threshold |", "| --- | --- | ---: | ---: | ---: | ---: |"]
        lines += [f"| {r['label']} | {r['held_out']} | {r['n']} | {r['accuracy']:.3f} | "
                  f"{_fmt(r['f1'] if r['tp'] + r['fn'] else None)} | {r['threshold']:.2f} |" for r in report["loso"]]
    if args.speed:
        from ascl_ray.reward.classifier import MiniLMEncoder

        texts = [e.response for e in S["jbb"][:512]]
        report["speed"] = {}
        for jn in judges:
            j = judges[jn]
            if hasattr(j, "encoder") and j.encoder is not None:
                j.encoder = MiniLMEncoder(max_length=64, num_threads=1)
            t = time.perf_counter()
            j.judge([""] * len(texts), texts)
            report["speed"][jn] = round(len(texts) / (time.perf_counter() - t), 1)
        lines += ["", "## In-process speed (1 thread, 512 JBB responses, items/s)", ""]
        lines += [f"- {k}: {v}" for k, v in report["speed"].items()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text("\n".join(lines) + "\n")
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    print("\n".join(lines))
    print(f"[judge_study] wrote {out / 'report.md'} and report.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
