"""Labelled judge-evaluation sources read from the shared data folder (read-only; never copied into the repo).

``load_source(name, data_dir) -> list[Example]`` (or ``list[Pair]`` for ``hh_rlhf``). Each ``Example`` has
``prompt``, ``response``, and per-task labels (``None`` when the source says nothing about that task):

  ``refusal``   1 = the response refuses / does not comply (fully or partially), 0 = it complies
  ``harmful``   1 = the response (or text) is harmful / jailbroken, 0 = not

| source | rows | labels | who labelled |
| --- | --- | --- | --- |
| ``xstest_gpt4`` | 450 GPT-4 completions of the XSTest prompts | refusal (full + partial = 1); harmful = unsafe prompt and full compliance (1 row) | humans (2 annotators) |
| ``gptfuzz_train`` / ``gptfuzz_eval`` | 6,160 / 1,540 jailbreak responses (Vicuna-7B, ChatGPT, Llama-2-7B-chat; questions 0-79 / 80-99) | harmful | humans (GPTFuzz authors) |
| ``jbb`` | 1,637 jailbreak responses (JailbreakBench artifacts: 5 attacks x 4 target models; rows without a response dropped) | harmful = ``jailbroken`` | LLM judge (JailbreakBench), silver |
| ``coconot_chosen`` | 927 GPT-4 answers chosen as the compliant answer to should-comply prompts (CoCoNot preference pairs) | refusal = 0, harmful = 0 by construction | dataset authors |
| ``moderation`` | 1,680 texts (user content, not responses) | harmful = any of the 8 categories | humans (OpenAI) |
| ``hh_rlhf`` | 2,312 pairs: the last assistant turn of ``chosen`` vs ``rejected`` | pairwise: chosen is less harmful | crowdworkers (noisy, relative) |

``group`` is a prompt id for group-disjoint splits (GPTFuzz question, JBB behaviour, XSTest prompt id).
Stdlib only.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

__all__ = ["Example", "Pair", "SOURCES", "find_data_dir", "load_source", "load_all"]

SOURCES = ("xstest_gpt4", "gptfuzz_train", "gptfuzz_eval", "jbb", "coconot_chosen", "moderation", "hh_rlhf")


@dataclass(frozen=True)
class Example:
    source: str
    prompt: str
    response: str
    refusal: Optional[int] = None
    harmful: Optional[int] = None
    group: str = ""


@dataclass(frozen=True)
class Pair:
    source: str
    prompt: str
    chosen: str  # the less harmful continuation
    rejected: str


def find_data_dir(explicit: Optional[str] = None) -> Optional[Path]:
    """``explicit``, else ``$ASCL_DATA_DIR``, else ``<repo>/../shared/data``, else ``/work/shared/data``."""
    repo = Path(__file__).resolve().parents[2]
    for c in (explicit, os.environ.get("ASCL_DATA_DIR"), repo.parent / "shared" / "data", "/work/shared/data"):
        if c and Path(c).is_dir():
            return Path(c)
    return None


def _csv(path: Path) -> list[dict]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(x) for x in f if x.strip()]


def _xstest(d: Path) -> list[Example]:
    out = []
    for r in _csv(d / "xstest" / "model_completions" / "xstest_v2_completions_gpt4.csv"):
        lab = r["final_label"].strip()
        unsafe_prompt = r["type"].startswith("contrast")
        out.append(Example("xstest_gpt4", r["prompt"], r["completion"] or "", refusal=int(lab != "1_full_compliance"),
                           harmful=int(unsafe_prompt and lab == "1_full_compliance"), group=f"xs{r['id']}"))
    return out


def _gptfuzz(d: Path, split: str) -> list[Example]:
    qs = {r["index"].strip(): r["text"] for r in _csv(d / "gptfuzz" / "question_list.csv")}
    f = "responses_labeled_train.csv" if split == "train" else "responses_labeled_evaluate.csv"
    return [Example(f"gptfuzz_{split}", qs[r["question"].strip()], r["Response"] or "", harmful=int(r["label"]),
                    group=f"q{r['question'].strip()}") for r in _csv(d / "gptfuzz" / f)]


def _jbb(d: Path) -> list[Example]:
    return [Example("jbb", r["goal"], r["response"], harmful=int(bool(r["jailbroken"])), group=f"b{r['index']}")
            for r in _jsonl(d / "jbb_artifacts" / "jbb_attack_artifacts.jsonl") if r.get("response") is not None]


def _coconot(d: Path) -> list[Example]:
    return [Example("coconot_chosen", r["prompt"], r["chosen"], refusal=0, harmful=0, group=str(r["id"]))
            for r in _jsonl(d / "coconot" / "coconot_pref.jsonl")]


_MOD_KEYS = ("S", "H", "V", "HR", "SH", "S3", "H2", "V2")


def _moderation(d: Path) -> list[Example]:
    out = []
    for i, r in enumerate(_jsonl(d / "openai_moderation" / "samples-1680.jsonl")):
        out.append(Example("moderation", "", r["prompt"], harmful=int(any(r.get(k) == 1 for k in _MOD_KEYS)),
                           group=f"m{i}"))
    return out


def _split_last_turn(transcript: str) -> tuple[str, str]:
    head, sep, last = transcript.rpartition("\n\nAssistant:")
    if not sep:
        return "", transcript.strip()
    prompt = head.rpartition("\n\nHuman:")[2].strip()
    return prompt, last.strip()


def _hh(d: Path) -> list[Pair]:
    out = []
    for r in _jsonl(d / "hh_rlhf_harmless" / "harmless_base_test.jsonl"):
        p, c = _split_last_turn(r["chosen"])
        _, j = _split_last_turn(r["rejected"])
        out.append(Pair("hh_rlhf", p, c, j))
    return out


def load_source(name: str, data_dir: Optional[Union[str, Path]] = None) -> list:
    d = find_data_dir(str(data_dir) if data_dir else None)
    if d is None:
        raise FileNotFoundError("shared data folder not found (pass --data-dir or set ASCL_DATA_DIR)")
    loaders = {"xstest_gpt4": _xstest, "gptfuzz_train": lambda x: _gptfuzz(x, "train"),
               "gptfuzz_eval": lambda x: _gptfuzz(x, "eval"), "jbb": _jbb, "coconot_chosen": _coconot,
               "moderation": _moderation, "hh_rlhf": _hh}
    if name not in loaders:
        raise KeyError(f"unknown source {name!r}; known: {list(SOURCES)}")
    return loaders[name](d)


def load_all(names=SOURCES, data_dir: Optional[Union[str, Path]] = None) -> dict[str, list]:
    return {n: load_source(n, data_dir) for n in names}
