"""Small file helpers: atomic model folders, and JSON-lines reading with errors that name the file and line."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union


@contextmanager
def atomic_directory(out_dir: Union[str, Path]) -> Iterator[Path]:
    """Yield a temp folder next to ``out_dir``; on success it replaces ``out_dir`` in one rename,
    on error it is removed: a crash never leaves a half-written model folder behind."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".tmp-", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def json_objects(path: Union[str, Path]) -> Iterator[tuple[int, dict]]:
    """(line number, object) for every non-blank line of a JSON-lines file; a line that is not a JSON object
    raises ValueError naming ``path:line``."""
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object")
            yield lineno, obj
