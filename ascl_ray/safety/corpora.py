"""Build a RuleStore from the real rule corpora, read in place from a local folder.

- ``load_openai_model_spec(folder)``: OpenAI Model Spec (CC0) as parsed into
  ``sections.jsonl`` (80 sections) + ``cases.jsonl`` (183 GOOD/BAD examples).
  One category per section (name = section id, description = title); rules = the section's
  prose split into paragraphs; one case per example.
- ``load_aegis_policy(folder)``: NVIDIA Aegis 1.0 policy (Apache-2.0), 13 categories with
  "Should not / Can / Should" bullets as rules; the corpus has no cases.

[ours] The Model Spec labels responses GOOD/BAD, not verdicts. We derive a case verdict:
a GOOD response that opens with a refusal -> ``refuse``; else a BAD response that opens with a
refusal (an over-refusal example) -> ``comply``; else ``safe_complete`` inside the safety
sections (``stay_in_bounds`` subtree, ``prioritize_teen_safety``) and ``comply`` elsewhere.
The request is the last user turn (or the whole context rendered ``role: content`` if none);
the rationale is the example title + notes. Never copy these files into the repo.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable, Optional, Union

from ascl_ray.safety.spec import Case, Category, Rule, RuleStore, SpecError, register_corpus_loader

AEGIS_FILE = "aegis_v1_policy.json"
MODEL_SPEC_SAFETY_ROOTS = ("stay_in_bounds", "assume_best_intentions", "refusal_style",
                           "prioritize_teen_safety")
_REFUSAL = re.compile(
    r"^\W*(sorry|i'm sorry|i am sorry|i apologi[sz]e|i can't|i cannot|i can not|i won't|i will not|"
    r"i'm not able|i am not able|i'm unable|i am unable|i'm not going to|i must decline|i don't think i can)",
    re.IGNORECASE)
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")


def is_refusal_opening(text: str) -> bool:
    """True when a response opens like a refusal (used only to derive Model Spec case verdicts)."""
    return bool(_REFUSAL.match(text.replace("\u2019", "'").strip()))


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    try:
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise SpecError([f"{path}: line {n}: invalid JSON: {e.msg}"]) from e
    except OSError as e:
        raise SpecError([f"{path}: cannot read: {e}"]) from e
    return rows


def _paragraphs(text: str) -> list[str]:
    out = []
    for para in re.split(r"\n\s*\n", text or ""):
        para = _LINK.sub(r"\1", para)
        para = re.sub(r"[ \t]*\n[ \t]*", " ", para).strip()
        if para:
            out.append(para)
    return out


def _subtree(sections: list[dict], roots: Iterable[str]) -> set[str]:
    roots = set(roots)
    return {s["id"] for s in sections if s["id"] in roots or roots & set(s.get("parents") or [])}


def _request(context: list[dict]) -> str:
    users = [t.get("content", "") for t in context if t.get("role") == "user"]
    if users and users[-1].strip():
        return users[-1].strip()
    text = "\n".join(f"{t.get('role', '?')}: {t.get('content', '')}" for t in context).strip()
    return text or "(no request)"


def _case_verdict(row: dict, safety_section: bool) -> str:
    good = [r.get("content", "") for r in row.get("good_responses") or []]
    bad = [r.get("content", "") for r in row.get("bad_responses") or []]
    if any(is_refusal_opening(g) for g in good):
        return "refuse"
    if any(is_refusal_opening(b) for b in bad):
        return "comply"
    return "safe_complete" if safety_section else "comply"


def _rationale(row: dict) -> str:
    bits = [row.get("title") or "", row.get("note") or ""]
    bits += [r.get("label_note") or "" for r in row.get("good_responses") or []]
    return "; ".join(b.strip() for b in bits if b and b.strip())


@register_corpus_loader("openai_model_spec", expects="sections.jsonl, cases.jsonl", priority=0,
                        matches=lambda p: (p / "sections.jsonl").exists() and (p / "cases.jsonl").exists())
def load_openai_model_spec(folder: Union[str, Path], *, sections: Optional[list[str]] = None,
                           safety_only: bool = False, split_paragraphs: bool = True) -> RuleStore:
    """Store from the parsed Model Spec folder (``sections.jsonl``, ``cases.jsonl``).

    sections:     keep only these section ids (in file order); safety_only: keep the
                  ``MODEL_SPEC_SAFETY_ROOTS`` subtrees; split_paragraphs: one rule per paragraph
                  (ids ``<section>.<n>``) instead of one rule per section.
    """
    folder = Path(folder)
    secs = _read_jsonl(folder / "sections.jsonl")
    rows = _read_jsonl(folder / "cases.jsonl")
    safety = _subtree(secs, MODEL_SPEC_SAFETY_ROOTS)
    keep = {s["id"] for s in secs}
    if safety_only:
        keep &= safety
    if sections is not None:
        unknown = sorted(set(sections) - {s["id"] for s in secs})
        if unknown:
            raise SpecError([f"{folder}: unknown section ids {unknown}"])
        keep &= set(sections)
    by_section: dict[str, list[Case]] = {}
    for row in rows:
        sid = row.get("section_id")
        if sid not in keep:
            continue
        by_section.setdefault(sid, []).append(Case(
            id=f"{sid}.c{row.get('case_index', len(by_section.get(sid, [])))}",
            request=_request(row.get("context") or []),
            verdict=_case_verdict(row, sid in safety),
            rationale=_rationale(row),
        ))
    cats = []
    for s in secs:
        if s["id"] not in keep:
            continue
        if split_paragraphs:
            rules = tuple(Rule(f"{s['id']}.{i + 1}", p) for i, p in enumerate(_paragraphs(s.get("text", ""))))
        else:
            body = " ".join(_paragraphs(s.get("text", "")))
            rules = (Rule(s["id"], body),) if body else ()
        cats.append(Category(s["id"], s.get("title") or s["id"], rules, tuple(by_section.get(s["id"], []))))
    if not cats:
        raise SpecError([f"{folder}: no sections selected"])
    return RuleStore(cats, name="openai_model_spec",
                     description="OpenAI Model Spec (CC0), sections as categories, examples as cases")


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


@register_corpus_loader("aegis_safety_policy", expects=AEGIS_FILE, priority=1,
                        matches=lambda p: (p / AEGIS_FILE).exists())
def load_aegis_policy(folder: Union[str, Path]) -> RuleStore:
    """Store from ``aegis_v1_policy.json``: 13 categories, rules prefixed Should not / Can / Should."""
    path = Path(folder) / AEGIS_FILE
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise SpecError([f"{path}: cannot load: {e}"]) from e
    cats = []
    raw = data.get("categories") if isinstance(data, dict) else None
    if not isinstance(raw, list) or not raw:
        raise SpecError([f"{path}: categories: expected a non-empty list"])
    for i, c in enumerate(raw):
        if not isinstance(c, dict) or not c.get("id") or not c.get("name"):
            raise SpecError([f"{path}: categories[{i}]: expected an object with id and name"])
        rules = []
        for key, label in (("should_not", "Should not"), ("can", "Can"), ("should", "Should")):
            for j, text in enumerate(c.get(key) or []):
                rules.append(Rule(f"{c['id']}.{key}.{j + 1}", f"{label}: {text}"))
        cats.append(Category(_slug(c["name"]), f"{c['id']}: {c['name']}", tuple(rules), ()))
    return RuleStore(cats, name="aegis_v1",
                     description="NVIDIA Aegis 1.0 content-safety policy (Apache-2.0)")
