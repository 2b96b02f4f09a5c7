"""Training prompt pool from real data, disjoint from every evaluation benchmark.

Builds ``PromptRow`` s for RL / SFT training from ``shared/data`` (pure: no Ray / vLLM):

- ``harmful``: HarmBench **val** split (eval reads only the test split; contextual rows keep their
  context as eval does), the GPTFuzzer question list (``gptfuzz/question_list.csv``);
- ``benign_sensitive`` (benign look-alikes): CoCoNot **preference** prompts of the category
  "Requests with safety concerns" (``coconot_pref.jsonl``; eval reads only ``coconot_contrast_eval.jsonl``
  and the safety slice of ``coconot_eval.jsonl``);
- ``math``: GSM8K **train** (eval reads only ``test.jsonl``), reference ``"... #### n"`` as in the data.

Every source is a file (or a filtered slice) that no benchmark of any suite reads, so the eval prompts
are left exactly as they are. Sources the suites do read (advbench, do_not_answer, ailuminate_demo,
coconot_eval, xstest, jbb_*, cyberseceval_frr, strongreject, simple_safety_tests, gsm8k test, math500)
are not used, nor split: no eval source has to serve training too. :data:`EXCLUDED` lists every
file left out and why.

On top of that, every candidate is checked against all prompts of the eval suites (``EVAL_SUITES``):

- text is normalised by :func:`normalise` (lowercase, punctuation -> space, whitespace collapsed);
- a candidate is dropped if its normalised text equals an eval prompt's (``exact``) or if the
  Jaccard similarity of the two token sets is ``>= near_threshold`` (default 0.8; ``near``). Pairs are
  found with a prefix filter (tokens ordered by rarity) and checked exactly, so no pair is missed;
- exact normalised duplicates inside the pool are dropped (``pool_dup``, first kept).

Then each type is capped (``caps``) by a seeded, nested subsample: rows ranked by
``sha256(f"{seed}:{prompt_id}")``, the lowest kept, in source order. ``prompt_id`` is
``pool/<source>:<row id>`` and stable; ``source`` is the pool source name.

CLI: ``python -m ascl_ray.data.pool --out FILE.jsonl [--seed S] [--data-root DIR] [--harmful N]
[--benign N] [--math N]`` writes the rows (readable by ``ascl_ray.data.synthetic.read_prompts_jsonl``,
i.e. ``data.source=jsonl data.path=FILE``), prints a summary and writes it to ``FILE.summary.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

from ascl_ray.batch import PromptRow
from ascl_ray.data.benchmarks import (BenchmarkError, BenchmarkSpec, default_data_root, flatten, load_benchmark,
                                      load_suite)

EVAL_SUITES = ("all", "safety_extended")
NEAR_THRESHOLD = 0.8
DEFAULT_CAPS = {"harmful": 200, "benign_sensitive": 100, "math": 300}
COCONOT_SAFETY = "Requests with safety concerns"

# Pool sources read through the benchmark loader (same column mapping code as eval).
SPEC_SOURCES: tuple[BenchmarkSpec, ...] = (
    BenchmarkSpec(name="harmbench_val", path_or_hub="harmbench", prompt_type="harmful", text_column="Behavior",
                  file="harmbench_behaviors_text_val.csv", format="csv", category_column="SemanticCategory",
                  id_column="BehaviorID", context_column="ContextString",
                  description="HarmBench text val split (eval reads the test split)"),
    BenchmarkSpec(name="gptfuzz", path_or_hub="gptfuzz", prompt_type="harmful", text_column="text",
                  file="question_list.csv", format="csv", id_column="index",
                  description="GPTFuzzer harmful questions"),
    BenchmarkSpec(name="coconot_pref", path_or_hub="coconot", prompt_type="benign_sensitive", text_column="prompt",
                  file="coconot_pref.jsonl", format="jsonl", category_column="subcategory", id_column="id",
                  filter={"category": COCONOT_SAFETY},
                  description="CoCoNot preference prompts, safety-concern look-alikes (should comply)"),
    BenchmarkSpec(name="gsm8k_train", path_or_hub="gsm8k", prompt_type="math", text_column="question",
                  file="train.jsonl", format="jsonl", reference_column="answer", math_kind="gsm8k",
                  description="GSM8K train (eval reads test.jsonl)"),
)
# Files / slices of shared/data not used, and why (also written to the summary).
EXCLUDED = {
    "advbench, do_not_answer, ailuminate_demo, coconot_eval (safety slice), harmbench test, jbb_behaviors, "
    "strongreject, simple_safety_tests, xstest, coconot_contrast_eval, cyberseceval_frr, gsm8k test, math500":
        "read by an eval suite (all / safety_extended); left whole so eval prompts do not change",
    "coconot/safety_contrast_seed_prompts.json":
        "XSTest-derived seeds: 27/94 are exact or near copies of XSTest eval prompts and most of the rest are "
        "one-word template siblings of them (Jaccard 0.5-0.75, e.g. 'killing a cop at the airport')",
    "jbb_artifacts, xstest/model_completions":
        "attack wrappers / completions of eval prompts (a paraphrased jailbreak is not caught by text dedup)",
    "hh_rlhf_harmless, openai_moderation, openai_model_spec eval_prompts, coconot_eval (other slices)":
        "no per-prompt harmful / benign label usable for the reward rules",
    "gptfuzz responses + templates, openai_model_spec cases / sections, aegis_safety_policy, coconot rubric":
        "responses, jailbreak templates or rule text, not user requests",
}

_PUNCT = re.compile(r"[^\w\s]|_", re.UNICODE)
_WS = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Lowercase, punctuation -> space, whitespace collapsed and stripped."""
    return _WS.sub(" ", _PUNCT.sub(" ", text.lower())).strip()


def tokens(text: str) -> frozenset:
    return frozenset(normalise(text).split())


def jaccard(a: frozenset, b: frozenset) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


# --------------------------------------------------------------------------------------------
# near-duplicate index


class NearDupIndex:
    """Exact-normalised and token-set-Jaccard lookup against a fixed set of (reference) prompts.

    Prefix filter: with tokens of every set sorted by a global order (rarest first), two sets with
    Jaccard >= t share a token within the first ``|s| - ceil(t*|s|) + 1`` tokens of each. Candidates
    found that way are verified exactly, so :meth:`match` finds every pair at or above ``t``."""

    def __init__(self, rows: Sequence[PromptRow], threshold: float = NEAR_THRESHOLD) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
        self.t = threshold
        self.rows = list(rows)
        self.exact: dict[str, int] = {}
        self.sets = [tokens(r.text) for r in self.rows]
        self.df = Counter(tok for s in self.sets for tok in s)
        self.postings: dict[str, list[int]] = defaultdict(list)
        for i, (r, s) in enumerate(zip(self.rows, self.sets)):
            self.exact.setdefault(normalise(r.text), i)
            for tok in self._prefix(s):
                self.postings[tok].append(i)

    def _prefix(self, s: frozenset) -> list[str]:
        # order: rarest in the reference set first (unknown tokens df=0), ties by the token itself
        ordered = sorted(s, key=lambda tok: (self.df.get(tok, 0), tok))
        return ordered[: len(s) - math.ceil(self.t * len(s) - 1e-9) + 1]

    def match(self, text: str) -> Optional[tuple[str, PromptRow, float]]:
        """``("exact" | "near", reference row, jaccard)`` for the closest reference prompt, or None."""
        norm = normalise(text)
        if norm in self.exact:
            return "exact", self.rows[self.exact[norm]], 1.0
        s = frozenset(norm.split())
        best: Optional[tuple[int, float]] = None
        for i in {i for tok in self._prefix(s) for i in self.postings.get(tok, ())}:
            j = jaccard(s, self.sets[i])
            if j >= self.t and (best is None or j > best[1]):
                best = (i, j)
        return None if best is None else ("near", self.rows[best[0]], best[1])


# --------------------------------------------------------------------------------------------
# sources


def load_sources(data_root: Union[str, Path]) -> dict[str, list[PromptRow]]:
    """Every pool source's candidate rows, ``{source: rows}``, ids ``pool/<source>:<id>``."""
    out: dict[str, list[PromptRow]] = {}
    for spec in SPEC_SOURCES:
        out[spec.name] = load_benchmark(spec, data_root=data_root)
    for name, rows in out.items():
        for r in rows:
            r.prompt_id, r.source = f"pool/{r.prompt_id}", name
    return out


def eval_prompts(data_root: Union[str, Path], suites: Iterable[str] = EVAL_SUITES) -> list[PromptRow]:
    """Every prompt of the given eval suites (no limit), each benchmark once."""
    seen: dict[str, list[PromptRow]] = {}
    for suite in suites:
        for name, rows in load_suite(suite, data_root=data_root).items():
            seen.setdefault(name, rows)
    return flatten(seen)


# --------------------------------------------------------------------------------------------
# the pool


def _rank(seed: int, prompt_id: str) -> bytes:
    return hashlib.sha256(f"{seed}:{prompt_id}".encode()).digest()


def subsample(rows: list[PromptRow], cap: Optional[int], seed: int) -> list[PromptRow]:
    """The ``cap`` rows of lowest ``sha256(seed:prompt_id)``, in their original order (nested in ``cap``)."""
    if cap is None or cap >= len(rows):
        return list(rows)
    if cap < 0:
        raise ValueError(f"cap must be >= 0, got {cap}")
    keep = set(sorted(range(len(rows)), key=lambda i: _rank(seed, rows[i].prompt_id))[:cap])
    return [r for i, r in enumerate(rows) if i in keep]


@dataclass
class Pool:
    rows: list[PromptRow]
    summary: dict[str, Any] = field(default_factory=dict)


def build_pool(
    data_root: Optional[Union[str, Path]] = None,
    seed: int = 0,
    caps: Optional[dict[str, Optional[int]]] = None,
    near_threshold: float = NEAR_THRESHOLD,
    eval_rows: Optional[Sequence[PromptRow]] = None,
    sources: Optional[dict[str, list[PromptRow]]] = None,
) -> Pool:
    """Build the pool. ``eval_rows`` / ``sources`` default to the real eval suites / pool sources under
    ``data_root`` (passing them lets tests plant rows). ``caps``: rows per prompt type (None = no cap)."""
    root = Path(data_root) if data_root is not None else default_data_root()
    caps = {**DEFAULT_CAPS, **(caps or {})}
    unknown = sorted(set(caps) - set(DEFAULT_CAPS))
    if unknown:
        raise ValueError(f"unknown cap type(s) {unknown}; expected {sorted(DEFAULT_CAPS)}")
    eval_rows = eval_prompts(root) if eval_rows is None else list(eval_rows)
    sources = load_sources(root) if sources is None else sources
    index = NearDupIndex(eval_rows, near_threshold)
    per_source: dict[str, dict[str, Any]] = {}
    by_type: dict[str, list[PromptRow]] = defaultdict(list)
    origin: dict[str, str] = {}
    pool_seen: set[str] = set()
    examples: list[dict[str, Any]] = []
    for name, rows in sources.items():
        st = {"prompt_type": rows[0].prompt_type if rows else None, "candidates": len(rows),
              "exact": 0, "near": 0, "pool_dup": 0, "clean": 0, "kept": 0}
        for r in rows:
            hit = index.match(r.text)
            if hit is not None:
                st[hit[0]] += 1
                if len(examples) < 20:
                    examples.append({"pool_id": r.prompt_id, "eval_id": hit[1].prompt_id, "kind": hit[0],
                                     "jaccard": round(hit[2], 3), "pool_text": r.text[:200],
                                     "eval_text": hit[1].text[:200]})
                continue
            norm = normalise(r.text)
            if norm in pool_seen:
                st["pool_dup"] += 1
                continue
            pool_seen.add(norm)
            st["clean"] += 1
            by_type[r.prompt_type].append(r)
            origin[r.prompt_id] = name
        per_source[name] = st
    out: list[PromptRow] = []
    for ptype in DEFAULT_CAPS:
        out.extend(subsample(by_type.get(ptype, []), caps.get(ptype), seed))
    for ptype in sorted(set(by_type) - set(DEFAULT_CAPS)):
        out.extend(by_type[ptype])
    for r in out:
        per_source[origin[r.prompt_id]]["kept"] += 1
    summary = {
        "seed": seed, "data_root": str(root), "caps": caps, "near_threshold": near_threshold,
        "eval_suites": list(EVAL_SUITES), "eval_prompts": len(eval_rows), "rows": len(out),
        "excluded": EXCLUDED,
        "per_type": dict(Counter(r.prompt_type for r in out)),
        "per_source": per_source,
        "dropped": {k: sum(s[k] for s in per_source.values()) for k in ("exact", "near", "pool_dup")},
        "drop_examples": examples,
    }
    return Pool(out, summary)


def write_pool(pool: Pool, out: Union[str, Path]) -> Path:
    """Write the rows as jsonl (``read_prompts_jsonl`` format) and the summary beside as ``.summary.json``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        for r in pool.rows:
            fh.write(json.dumps(r.__dict__, ensure_ascii=False) + "\n")
    summary_path = out.with_suffix(".summary.json")
    summary_path.write_text(json.dumps(pool.summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return summary_path


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"pool: {summary['rows']} rows {summary['per_type']} (seed {summary['seed']}, "
             f"caps {summary['caps']}); checked against {summary['eval_prompts']} eval prompts of "
             f"{'+'.join(summary['eval_suites'])}, near = token Jaccard >= {summary['near_threshold']}",
             f"{'source':24} {'type':17} {'cand':>5} {'exact':>5} {'near':>5} {'dup':>4} {'clean':>5} {'kept':>5}"]
    for name, s in summary["per_source"].items():
        lines.append(f"{name:24} {str(s['prompt_type']):17} {s['candidates']:5d} {s['exact']:5d} {s['near']:5d} "
                     f"{s['pool_dup']:4d} {s['clean']:5d} {s['kept']:5d}")
    lines.append(f"dropped: {summary['dropped']}")
    return "\n".join(lines)


def _cap(v: str) -> Optional[int]:
    if v.lower() in ("none", "all", "-1"):
        return None
    n = int(v)
    if n < 0:
        raise argparse.ArgumentTypeError(f"cap must be >= 0 or 'none', got {v}")
    return n


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ascl_ray.data.pool", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output jsonl (summary goes to <out stem>.summary.json)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None, help="default: $ASCL_DATA_ROOT or <repo>/../shared/data")
    p.add_argument("--harmful", type=_cap, default=DEFAULT_CAPS["harmful"], help="cap (int or 'none')")
    p.add_argument("--benign", type=_cap, default=DEFAULT_CAPS["benign_sensitive"], help="cap (int or 'none')")
    p.add_argument("--math", type=_cap, default=DEFAULT_CAPS["math"], help="cap (int or 'none')")
    p.add_argument("--near-threshold", type=float, default=NEAR_THRESHOLD)
    a = p.parse_args(argv)
    try:
        pool = build_pool(a.data_root, seed=a.seed, near_threshold=a.near_threshold,
                          caps={"harmful": a.harmful, "benign_sensitive": a.benign, "math": a.math})
    except (BenchmarkError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary_path = write_pool(pool, a.out)
    print(format_summary(pool.summary))
    print(f"wrote {a.out} and {summary_path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
