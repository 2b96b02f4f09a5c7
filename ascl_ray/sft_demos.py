"""ASCL cold-start demonstrations from real prompts [ours]: a PromptRow pool -> segment-form SFT lines.

    python -m ascl_ray.sft_demos --pool POOL.jsonl --out DEMOS.jsonl [--seed S] [--answers ANSWERS.jsonl]
        [--benign-consult-rate 0.25] [--max-per-type N] [--summary FILE] [hydra overrides, e.g. model=smollm2_135m]

The pool is a PromptRow jsonl (``ascl_ray.data.synthetic.write_jsonl`` format). Per prompt type:

- ``harmful``: consult ``retrieve_safety_rules`` (category: the row's, when it names a rule-store category,
  else inferred from keywords in its category and text, else ``general``; query: the request's first
  words), the tool turn masked, then a brief refusal citing the category's prohibiting rule (one of a
  few wordings, drawn per row).
- ``benign_sensitive`` (look-alikes): answered directly; a share ``--benign-consult-rate`` consults
  first, then complies. The answer is the row's entry in ``--answers`` (``{"prompt_id", "answer"}`` per
  line: e.g. judge-accepted self-generated answers, as CADA does) or, without one, a short template
  answer, labelled ``answer_source: "template"`` in the line and counted in the summary.
- ``math``: no consult; the answer is the reference solution (GSM8K's own ``... #### n`` with its
  ``<<...>>`` calculator annotations stripped; a MATH reference becomes ``\\boxed{...}``).
- ``gray_zone`` (if present): consult, the tool turn shows a verdict drawn per row, the answer follows it.
Other prompt types are skipped (counted in the summary).

Lines are rendered with ``sft_run.demo_line`` in the method context that RL and eval use
(``build_context(cfg.method, tokenizer)`` of the same Hydra overrides), so the call, the tool turn and
the system prompt are exactly the rollout's; every call is checked to execute (``valid``). Every draw
(wording, verdict, which benign rows consult, the per-type subsample) comes from a key of (seed,
prompt_id): deterministic for a seed, and a row's wording does not depend on the other rows. Writes OUT and a
summary json (``--summary``, default ``OUT`` with ``.summary.json``): counts and consult rate per type.
The builders are pure (no Ray); the CLI loads the model's tokenizer only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
from collections import Counter
from typing import Any, Optional, Sequence

from ascl_ray.batch import PromptRow
from ascl_ray.data.synthetic import Demo, read_prompts_jsonl
from ascl_ray.io import json_objects

DEFAULT_BENIGN_CONSULT_RATE = 0.25
DEMO_TYPES = ("harmful", "benign_sensitive", "math", "gray_zone")

# (store category, keywords searched in the row's category + text, lower case); first match wins
CATEGORY_KEYWORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("sexual_minors", ("minors", "child sexual", "csam", "underage", "sexual minors")),
    ("self_harm", ("suicide", "self-harm", "self_harm", "self harm", "kill myself", "cut myself", "anorexi")),
    ("cyber", ("cyber", "hack", "malware", "ransomware", "phishing", "exploit", "ddos", "keylogger", "virus",
               "password", "intrusion", "botnet", "sql injection")),
    ("drugs", ("drug", "meth", "cocaine", "heroin", "fentanyl", "narcotic", "lsd", "opioid")),
    ("violence_weapons", ("weapon", "bomb", "explosi", "gun", "firearm", "kill", "murder", "attack", "shoot",
                          "violen", "chemical", "biological", "poison", "terror", "assault", "cruel", "tortur", "hurt",
                          "abuse")),
    ("hate_harassment", ("hate", "harass", "racis", "slur", "bully", "discriminat", "extremis", "insult", "sexis",
                         "stereotyp", "demean")),
    ("privacy", ("privacy", "personal information", "home address", "stalk", "dox", "surveil", "track someone",
                 "social security")),
    ("fraud_deception", ("fraud", "scam", "fake", "forge", "counterfeit", "misinformation", "disinformation",
                         "decept", "launder", "steal", "theft", "copyright", "pirat", "cheat", "propaganda",
                         "manipulat", "lie", "lying")),
)
REFUSALS = (
    "I can't help with that. The rule says: {rule}",
    "Sorry, I won't help with this. {rule}",
    "I have to decline. This falls under {desc}: {rule}",
    "I can't assist with this request. {rule} I can share general safety information instead.",
)
BENIGN_TEMPLATES = (   # used only without an --answers entry; labelled answer_source "template"
    "Sure, this is a safe request and I can help. Start with the basics, follow the usual safety steps, "
    "and ask me if you want more detail.",
    "Happy to help. This is a normal question: here is a short overview, and I can go into more detail "
    "on any step you like.",
    "Of course. Nothing harmful here, so here is the general idea; tell me what you need next.",
)
GRAY_COMPLY = "Sure. The current policy allows this, so here is how."


def _rng_key(seed: int, prompt_id: str, what: str) -> float:
    """A uniform [0, 1) draw from (seed, prompt_id, what): stable for a row whatever else is in the pool."""
    h = hashlib.sha256(f"{seed}\x00{prompt_id}\x00{what}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2 ** 64


def _pick(seq: Sequence[str], seed: int, prompt_id: str, what: str) -> str:
    return seq[int(_rng_key(seed, prompt_id, what) * len(seq))]


def strip_calculator(reference: str) -> str:
    """GSM8K's solution text without its ``<<48/2=24>>`` calculator annotations."""
    return re.sub(r"<<[^<>]*>>", "", reference).strip()


def math_answer(row: PromptRow) -> str:
    ref = strip_calculator(row.reference or "")
    if "####" in ref or row.math_kind == "gsm8k":
        return ref
    return f"The answer is $\\boxed{{{ref}}}$."


def infer_category(row: PromptRow, categories: Sequence[str], fallback: str = "general") -> str:
    """The rule-store category a call about ``row`` names: the row's own when it is one of ``categories``
    (case/space-insensitive), else the first keyword (word start) match in its category label, then in its
    text, else ``fallback``."""
    from ascl_ray.safety.retrieval import normalize_category

    if row.category:
        want = normalize_category(row.category)
        for c in categories:
            if normalize_category(c) == want:
                return c
    for hay in (row.category or "", row.text):      # the row's own category label first, then its text
        hay = hay.lower().replace("_", " ")
        for cat, words in CATEGORY_KEYWORDS:
            if cat in categories and any(re.search(r"\b" + re.escape(w), hay) for w in words):
                return cat
    return fallback


def refusal_rule(category: Any) -> str:
    """The rule a refusal under ``category`` cites: its first prohibiting rule ("No ...", "Never ...",
    "Refuse ..."; ``general``: "Refuse only if the answer gives real help to cause harm."), else its first."""
    rules = [r.text for r in category.rules]
    for t in rules:
        if re.match(r"(no|never|refuse|do not|don't)\b", t.strip().lower()):
            return t
    return rules[0] if rules else "No help with requests that could cause harm."


def query_of(row: PromptRow, n_words: int = 8) -> str:
    words = re.findall(r"[A-Za-z0-9']+", row.text)
    return " ".join(words[:n_words]).lower() or "request"


def load_answers(path: str) -> dict[str, str]:
    """``{"prompt_id": ..., "answer": ...}`` per line -> {prompt_id: answer}; a bad line names file:line. Lines of
    ``ascl-ray cada-chains`` (judge-accepted self-generated chains) are read as they are: their ``final_text``
    is the answer, the first accepted chain of a prompt wins."""
    out: dict[str, str] = {}
    for lineno, obj in json_objects(path):
        pid, ans = obj.get("prompt_id"), obj.get("answer", obj.get("final_text"))
        if not isinstance(pid, str) or not isinstance(ans, str) or not ans.strip():
            raise ValueError(f"{path}:{lineno}: expected {{\"prompt_id\": str, \"answer\" (or cada-chains' "
                             f"\"final_text\"): non-empty str}}")
        out.setdefault(pid, ans.strip())
    return out


def _subsample(rows: list[PromptRow], max_per_type: Optional[int], seed: int) -> list[PromptRow]:
    if max_per_type is None:
        return rows
    keep: set[str] = set()
    for t in {r.prompt_type for r in rows}:
        part = sorted((r for r in rows if r.prompt_type == t), key=lambda r: _rng_key(seed, r.prompt_id, "keep"))
        keep |= {r.prompt_id for r in part[:max_per_type]}
    return [r for r in rows if r.prompt_id in keep]


def build_demos(rows: list[PromptRow], store: Any, *, seed: int = 0,
                benign_consult_rate: float = DEFAULT_BENIGN_CONSULT_RATE, answers: Optional[dict[str, str]] = None,
                max_per_type: Optional[int] = None) -> tuple[list[tuple[Demo, dict]], dict[str, int]]:
    """Pure: (Demo, bookkeeping) per kept row, in pool order, and {prompt_type: n skipped}. ``store``: the
    RuleStore the tool answers from. Benign rows consult in the exact share ``benign_consult_rate``."""
    if not 0.0 <= benign_consult_rate <= 1.0:
        raise ValueError(f"benign_consult_rate: expected a value in [0, 1], got {benign_consult_rate}")
    answers = answers or {}
    rows = _subsample(rows, max_per_type, seed)
    cats = [c for c in store.category_names if c not in set(store.operator_categories)]
    benign = sorted((r for r in rows if r.prompt_type == "benign_sensitive"),
                    key=lambda r: _rng_key(seed, r.prompt_id, "consult"))
    benign_consult = {r.prompt_id for r in benign[:round(benign_consult_rate * len(benign))]}
    out: list[tuple[Demo, dict]] = []
    skipped: Counter = Counter()
    for r in rows:
        t, pid = r.prompt_type, r.prompt_id
        call = policy = None
        meta: dict[str, Any] = {"answer_source": "reference" if t == "math" else "template"}
        if t == "harmful":
            cat = infer_category(r, cats)
            call = {"query": query_of(r), "category": cat}
            c = store[cat]
            answer = _pick(REFUSALS, seed, pid, "refusal").format(rule=refusal_rule(c), desc=c.description.lower())
        elif t == "benign_sensitive":
            if pid in benign_consult:
                call = {"query": query_of(r), "category": infer_category(r, cats)}
            if pid in answers:
                answer, meta["answer_source"] = answers[pid], "answers_file"
            else:
                answer = _pick(BENIGN_TEMPLATES, seed, pid, "benign")
        elif t == "math":
            answer = math_answer(r)
        elif t == "gray_zone" and r.category in store.operator_categories:
            verdict = "comply" if _rng_key(seed, pid, "verdict") < 0.5 else "refuse"
            call, policy = {"query": query_of(r), "category": r.category}, {r.category: verdict}
            c = store[r.category]
            if verdict == "refuse":
                answer, meta["answer_source"] = f"I can't help with that. {c.policy.text('refuse')}", "template"
            elif pid in answers:
                answer, meta["answer_source"] = answers[pid], "answers_file"
            else:
                answer = GRAY_COMPLY
            meta["verdict"] = verdict
        else:
            skipped[t] += 1
            continue
        meta.update(consulted=call is not None, category=call["category"] if call else None)
        out.append((Demo(r, call, answer, policy), meta))
    return out, dict(skipped)


def render_lines(demos: list[tuple[Demo, dict]], ctx: Any) -> list[dict]:
    """Segment-form lines (``sft_run.demo_line``) in the method context ``ctx``; every call must execute."""
    from ascl_ray.sft_run import demo_line

    if ctx.protocol is None:
        raise ValueError(f"method {ctx.name!r} offers no tool: ASCL demonstrations need method=ascl")
    lines = []
    for demo, meta in demos:
        if demo.tool_call is not None:
            info = ctx.tool_turn_text(ctx.protocol.format_call(demo.tool_call), 0, policy=demo.policy)[1]
            if not info["valid"]:
                raise ValueError(f"prompt {demo.row.prompt_id!r}: call {demo.tool_call} does not execute: "
                                 f"{info['error']}")
        lines.append({**demo_line(demo, ctx), **meta, "source": demo.row.source})
    return lines


def summarize(lines: list[dict], skipped: dict[str, int], **extra: Any) -> dict:
    by_type: dict[str, dict] = {}
    for ln in lines:
        b = by_type.setdefault(ln["prompt_type"], {"n": 0, "consulted": 0, "answer_source": {}})
        b["n"] += 1
        b["consulted"] += int(ln["consulted"])
        b["answer_source"][ln["answer_source"]] = b["answer_source"].get(ln["answer_source"], 0) + 1
    for b in by_type.values():
        b["consult_rate"] = b["consulted"] / b["n"]
    return {"n_lines": len(lines), "by_type": by_type, "skipped": skipped,
            "consult_rate": sum(ln["consulted"] for ln in lines) / max(len(lines), 1), **extra}


def _write_atomic(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def make_demos(pool: str, out: str, ctx: Any, *, seed: int = 0, answers_path: Optional[str] = None,
               benign_consult_rate: float = DEFAULT_BENIGN_CONSULT_RATE, max_per_type: Optional[int] = None,
               summary_path: Optional[str] = None) -> dict:
    """Read ``pool``, write the demonstrations to ``out`` and the summary json (written last); return it."""
    rows = read_prompts_jsonl(pool)
    answers = load_answers(answers_path) if answers_path else None
    demos, skipped = build_demos(rows, ctx.store, seed=seed, benign_consult_rate=benign_consult_rate,
                                 answers=answers, max_per_type=max_per_type)
    if not demos:
        raise ValueError(f"{pool}: no row of a type with demonstrations ({DEMO_TYPES}); skipped {skipped}")
    lines = render_lines(demos, ctx)
    _write_atomic(out, "".join(json.dumps(ln) + "\n" for ln in lines))
    s = summarize(lines, skipped, pool=pool, out=out, seed=seed, method=ctx.name,
                  benign_consult_rate=benign_consult_rate, max_per_type=max_per_type, answers_file=answers_path,
                  benign_answers=("answers_file (self-generated, judge-accepted upstream) where given, else a "
                                  "labelled template" if answers_path else "labelled template (no --answers)"))
    summary_path = summary_path or re.sub(r"\.jsonl$", "", out) + ".summary.json"
    _write_atomic(summary_path, json.dumps(s, indent=2) + "\n")
    return s


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ascl_ray.sft_demos", description=__doc__.split("\n\n")[0],
                                epilog="Other arguments are Hydra overrides (model=..., method.wire_format=...): "
                                       "use the ones RL will use.", allow_abbrev=False)
    p.add_argument("--pool", required=True, help="PromptRow jsonl")
    p.add_argument("--out", required=True, help="demonstrations jsonl (segment form, for ascl-ray sft --data)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--answers", default=None, help="jsonl of {prompt_id, answer} for benign look-alikes")
    p.add_argument("--benign-consult-rate", type=float, default=DEFAULT_BENIGN_CONSULT_RATE)
    p.add_argument("--max-per-type", type=int, default=None, help="seeded subsample of at most N rows per type")
    p.add_argument("--summary", default=None, help="summary json (default: OUT with .summary.json)")
    args, overrides = p.parse_known_args(argv)
    bad = [o for o in overrides if o.startswith("-")]
    if bad:
        p.error(f"unknown option(s) {bad}")
    from transformers import AutoTokenizer

    from ascl_ray.cli import compose
    from ascl_ray.rollout.method import build_context
    from ascl_ray.runtime import ensure_model

    cfg = compose(overrides)
    ctx = build_context(cfg.method, tokenizer=AutoTokenizer.from_pretrained(ensure_model(cfg)), train=True)
    s = make_demos(args.pool, args.out, ctx, seed=args.seed, answers_path=args.answers,
                   benign_consult_rate=args.benign_consult_rate, max_per_type=args.max_per_type,
                   summary_path=args.summary)
    print(json.dumps({k: s[k] for k in ("n_lines", "by_type", "skipped", "benign_answers")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
