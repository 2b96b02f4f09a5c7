"""Small readers for labelled judge data (CSV or JSONL), with errors that name the missing file or column."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

__all__ = ["read_table", "require_columns", "lookup_prompts", "to_binary_labels"]


def read_table(path: str, limit: Optional[int] = None) -> list[dict[str, Any]]:
    """Rows of a ``.csv`` (header row) or ``.jsonl``/``.json`` (one object per line / a list) file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    suffix = p.suffix.lower()
    rows: list[dict[str, Any]] = []
    if suffix in (".jsonl", ".ndjson") or (suffix == ".json" and _first_char(p) == "{"):
        with p.open(encoding="utf-8") as f:
            for ln, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{ln}: not a JSON object per line ({e})") from None
                if limit and len(rows) >= limit:
                    break
    elif suffix == ".json":
        data = json.loads(p.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of objects")
        rows = data[:limit] if limit else data
    elif suffix in (".csv", ".tsv"):
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
        with p.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
            for r in reader:
                rows.append(r)
                if limit and len(rows) >= limit:
                    break
    else:
        raise ValueError(f"{path}: unsupported file type {suffix!r} (use .csv, .tsv, .jsonl or .json)")
    return rows


def _first_char(p: Path) -> str:
    with p.open(encoding="utf-8") as f:
        return f.read(1)


def require_columns(rows: Sequence[dict], cols: Sequence[Optional[str]], path: str) -> None:
    if not rows:
        raise ValueError(f"{path}: no rows")
    have = list(rows[0].keys())
    for c in cols:
        if c is not None and c not in rows[0]:
            raise KeyError(f"{path}: column {c!r} not found; columns are {have}")


def lookup_prompts(values: Sequence[Any], spec: str) -> list[str]:
    """Map prompt ids to texts with ``FILE[:KEY_COL:TEXT_COL]`` (default columns ``index``, ``text``), e.g.
    GPTFuzz's ``question`` column -> ``question_list.csv``."""
    parts = spec.split(":")
    path = parts[0]
    key_col, text_col = (parts[1], parts[2]) if len(parts) >= 3 else ("index", "text")
    rows = read_table(path)
    require_columns(rows, [key_col, text_col], path)
    table = {str(r[key_col]).strip(): str(r[text_col]) for r in rows}
    out = []
    for v in values:
        k = str(v).strip()
        if k not in table:
            raise KeyError(f"prompt id {k!r} not found in {path} column {key_col!r}")
        out.append(table[k])
    return out


_TRUE = {"1", "true", "yes", "unsafe", "harmful", "y", "t"}
_FALSE = {"0", "false", "no", "safe", "unharmful", "harmless", "n", "f", ""}


def to_binary_labels(values: Sequence[Any], positive: Optional[Sequence[str]] = None, col: str = "label") -> list[int]:
    """1/0 labels. With ``positive`` (a list of label strings), a value is 1 iff it is one of them; otherwise
    common spellings are accepted (1/0, true/false, yes/no, unsafe/safe, harmful/unharmful)."""
    out = []
    pos = {str(p).strip().lower() for p in positive} if positive else None
    for v in values:
        s = str(v).strip().lower()
        if pos is not None:
            out.append(int(s in pos))
        elif s in _TRUE:
            out.append(1)
        elif s in _FALSE:
            out.append(0)
        else:
            raise ValueError(f"column {col!r}: label {v!r} is not binary; pass --positive-label to say which "
                             "values are positive")
    return out
