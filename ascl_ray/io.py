"""Small file-system helpers shared by every writer of model folders."""

from __future__ import annotations

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
