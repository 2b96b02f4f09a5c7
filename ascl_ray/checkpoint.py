"""Full-state checkpoints of an RL run: folder layout, atomic writes, retention, resume resolution,
config compatibility and the driver's own state (JSON + RNG). Pure: no Ray / vLLM / DeepSpeed
(torch and numpy are imported lazily, only by the RNG helpers).

Layout of one run folder (``trainer.out_dir``)::

    <out_dir>/checkpoints/iter-000010/      # N = completed iterations, zero-padded to 6 digits
        COMPLETE                            # written last: {"iteration": 10}
        trainer_state.json, rng.pt          # save_trainer_state
        ...                                 # whatever write_fn put there (the learners' DeepSpeed files)

A checkpoint is complete iff its folder holds ``COMPLETE``. ``write_checkpoint`` builds the folder
under a temp name next to the final one and renames it into place only after ``write_fn`` returned and
``COMPLETE`` was written, so readers never see a half-written checkpoint under its final name. One
writer per run folder (the driver).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional, Union

log = logging.getLogger("ascl_ray")

PathLike = Union[str, Path]

CKPT_DIR = "checkpoints"
COMPLETE = "COMPLETE"
TRAINER_STATE = "trainer_state.json"
RNG_FILE = "rng.pt"
_NAME = re.compile(r"^iter-(\d{6,})$")     # final names only: temp folders are "iter-NNNNNN.tmp-..."

# config keys whose change makes a checkpoint meaningless or unloadable (other model, other ZeRO-3
# partitioning, other batch shape, other prompt set or order)
RESUME_KEYS = ("model.name", "model.path", "learner.num_actors", "learner.dtype", "learner.zero_stage", "rollout.n_samples",
               "data.prompts_per_iter", "data.source", "data.path", "data.n_math", "data.eval_frac",
               "trainer.seed")

__all__ = ["CKPT_DIR", "COMPLETE", "RESUME_KEYS", "ckpt_name", "list_checkpoints", "checkpoint_iteration",
           "write_checkpoint", "resolve_resume", "resume_keys", "changed_keys", "check_resume_config",
           "config_digest", "capture_rng", "restore_rng", "save_trainer_state", "load_trainer_state"]


# ---------------------------------------------------------------------------------------------- layout
def ckpt_name(iteration: int) -> str:
    """Folder name of the checkpoint after ``iteration`` completed iterations: ``iter-000010``."""
    if int(iteration) != iteration or iteration < 0:
        raise ValueError(f"checkpoint iteration must be an int >= 0, got {iteration!r}")
    return f"iter-{int(iteration):06d}"


def _is_complete(folder: Path) -> bool:
    return (folder / COMPLETE).is_file()


def _entries(ckpt_root: Path) -> list[tuple[int, Path]]:
    """Every folder with a final checkpoint name (complete or not), sorted by iteration."""
    if not ckpt_root.is_dir():
        return []
    out = []
    for p in ckpt_root.iterdir():
        m = _NAME.match(p.name)
        if m and p.is_dir():
            out.append((int(m.group(1)), p))
    return sorted(out)


def list_checkpoints(out_dir: PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints of the run folder ``out_dir`` as (iteration, folder), oldest first.
    Incomplete folders (no ``COMPLETE``) and temp folders are ignored; no ``checkpoints/`` -> []."""
    return [(i, p) for i, p in _entries(Path(out_dir) / CKPT_DIR) if _is_complete(p)]


def checkpoint_iteration(folder: PathLike) -> int:
    """The completed iterations recorded in ``folder/COMPLETE`` (FileNotFoundError when incomplete)."""
    f = Path(folder) / COMPLETE
    if not f.is_file():
        raise FileNotFoundError(f"checkpoint {folder}: no {COMPLETE} file (incomplete checkpoint)")
    return int(json.loads(f.read_text())["iteration"])


def _write_text_durable(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_checkpoint(out_dir: PathLike, iteration: int, write_fn: Callable[[Path], Any], keep: int) -> Path:
    """Write checkpoint ``iteration`` of run folder ``out_dir`` and return its final folder.

    ``write_fn(tmp)`` fills a temp folder next to the final one (other processes on the machine may
    write there too, e.g. the learner actors; it must be on storage they share). Then ``COMPLETE``
    (``{"iteration": N}``) is written and the folder is renamed to ``checkpoints/iter-NNNNNN`` in one
    step. An older folder of the same iteration (a run resumed from an older checkpoint into the same
    folder) is first renamed to a temp name, also in one step, and deleted only after the new one is in
    place: deleting it under its final name could be killed half-way and leave a folder that still holds
    ``COMPLETE`` but not all its files. An exception in ``write_fn`` removes the temp folder, leaves
    every existing checkpoint as it was, and propagates.

    Afterwards only the newest ``keep`` (>= 1) complete checkpoints up to this one are kept: older ones
    lose their ``COMPLETE`` first (so a crash mid-delete never leaves one that looks complete) and are
    removed, together with incomplete folders of older iterations and the temp folders a killed writer
    left for this iteration or older ones (one writer per run folder: none of them is being written).
    The one just written is never removed; checkpoints of LATER iterations (a run resumed from an older
    checkpoint into the same folder) are left alone: whether to keep that other timeline is the
    caller's decision."""
    from ascl_ray.io import atomic_directory

    name = ckpt_name(iteration)
    if int(keep) != keep or keep < 1:
        raise ValueError(f"write_checkpoint: keep must be an int >= 1, got {keep!r}")
    root = Path(out_dir) / CKPT_DIR
    final = root / name
    replaced: Optional[Path] = None
    with atomic_directory(final) as tmp:
        os.chmod(tmp, 0o755)                  # mkdtemp makes it 0700; a checkpoint is an ordinary folder
        write_fn(tmp)
        _write_text_durable(tmp / COMPLETE, json.dumps({"iteration": int(iteration)}))
        if final.exists():                    # out of the way in one rename (atomic_directory would rmtree it)
            replaced = Path(tempfile.mkdtemp(prefix=name + ".tmp-replaced-", dir=root))
            os.replace(final, replaced)
    if replaced is not None:
        _remove_checkpoint(replaced)
    _prune(root, int(iteration), int(keep))
    return final


def _remove_checkpoint(folder: Path) -> None:
    try:
        (folder / COMPLETE).unlink()
    except FileNotFoundError:
        pass
    shutil.rmtree(folder, ignore_errors=True)


def _prune(root: Path, newest: int, keep: int) -> None:
    complete = [(i, p) for i, p in _entries(root) if _is_complete(p) and i <= newest]
    for _, p in complete[:-keep]:
        _remove_checkpoint(p)
    for i, p in _entries(root):              # incomplete leftovers of older iterations
        if i < newest and not _is_complete(p):
            shutil.rmtree(p, ignore_errors=True)
    for p in root.iterdir():                 # temp folders a killed writer left (atomic_directory's names)
        m = re.match(r"^iter-(\d{6,})\.tmp-", p.name)
        if m and int(m.group(1)) <= newest and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- resume
def _describe(root: Path) -> str:
    entries = _entries(root)
    if not entries:
        return "no checkpoint folders"
    return ", ".join(f"{p.name}{'' if _is_complete(p) else ' (incomplete)'}" for _, p in entries)


def resolve_resume(setting: str, out_dir: PathLike) -> Optional[Path]:
    """The checkpoint folder a run resumes from, for ``trainer.resume`` = ``setting``:

    - ``"never"``: None (a fresh run);
    - ``"auto"``: the newest complete checkpoint of ``out_dir``, or None when it has none;
    - a path: a complete checkpoint folder -> it; a run folder (holds ``checkpoints/``) -> its newest
      complete checkpoint; anything else (missing path, a file, an incomplete checkpoint, a run folder
      without a complete checkpoint, a folder that is neither) is a FileNotFoundError whose message
      starts with ``trainer.resume:`` and says what was found."""
    if setting == "never":
        return None
    if setting == "auto":
        found = list_checkpoints(out_dir)
        if not found and any(True for _ in _entries(Path(out_dir) / CKPT_DIR)):
            log.warning("trainer.resume=auto: %s has only incomplete checkpoints (%s); starting fresh",
                        Path(out_dir) / CKPT_DIR, _describe(Path(out_dir) / CKPT_DIR))
        return found[-1][1] if found else None
    hint = "expected 'auto', 'never', a complete checkpoint folder or a run folder"
    if not setting:
        raise FileNotFoundError(f"trainer.resume: empty value; {hint}")
    p = Path(setting)
    if not p.exists():
        raise FileNotFoundError(f"trainer.resume: {p} does not exist; {hint}")
    if not p.is_dir():
        raise FileNotFoundError(f"trainer.resume: {p} is a file, not a checkpoint folder or a run folder; {hint}")
    if _is_complete(p):
        return p
    if (p / CKPT_DIR).is_dir():
        found = list_checkpoints(p)
        if found:
            return found[-1][1]
        raise FileNotFoundError(f"trainer.resume: run folder {p} has no complete checkpoint in {p / CKPT_DIR} "
                                f"(found: {_describe(p / CKPT_DIR)})")
    if _NAME.match(p.name) or ".tmp-" in p.name:
        others = list_checkpoints(p.parent.parent) if p.parent.name == CKPT_DIR else []
        alt = f"; complete ones there: {', '.join(q.name for _, q in others)}" if others else ""
        raise FileNotFoundError(f"trainer.resume: {p} is an incomplete checkpoint (no {COMPLETE} file: the run "
                                f"stopped while writing it){alt}")
    raise FileNotFoundError(f"trainer.resume: {p} is neither a complete checkpoint (no {COMPLETE} file) nor a "
                            f"run folder (no {CKPT_DIR}/ folder); {hint}")


# ---------------------------------------------------------------------------------------------- config
_MISSING = object()


def _lookup(d: Any, dotted: str) -> Any:
    node = d
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _canon(v: Any) -> Any:
    """JSON-canonical form (tuples -> lists), so a saved (JSON round-tripped) value compares equal."""
    return json.loads(json.dumps(v, sort_keys=True, default=str))


def resume_keys(cfg_dict: dict) -> dict:
    """{dotted key: value} of ``RESUME_KEYS`` read from the plain (nested) config dict; keys absent
    from the config are absent from the result."""
    out = {}
    for k in RESUME_KEYS:
        v = _lookup(cfg_dict, k)
        if v is not _MISSING:
            out[k] = _canon(v)
    return out


def _dotted(d: dict) -> dict:
    """Accept either ``resume_keys`` output (dotted keys) or a whole nested config dict."""
    return d if (not d or any("." in str(k) for k in d)) else resume_keys(d)


def changed_keys(saved: dict, now: dict) -> list[str]:
    """Sorted keys whose values differ between ``saved`` and ``now`` or that one side lacks. Both are
    ``resume_keys`` dicts (a whole nested config dict is reduced with ``resume_keys`` first); values
    compare in JSON-canonical form."""
    a, b = _dotted(saved), _dotted(now)
    return sorted(k for k in set(a) | set(b)
                  if k not in a or k not in b or _canon(a[k]) != _canon(b[k]))


def check_resume_config(saved: dict, now: dict) -> None:
    """ValueError naming every changed resume key with its saved and current value (see ``changed_keys``)."""
    a, b = _dotted(saved), _dotted(now)
    bad = changed_keys(a, b)
    if bad:
        show = lambda d, k: json.dumps(d[k], default=str) if k in d else "<missing>"  # noqa: E731
        parts = ", ".join(f"{k} (saved {show(a, k)}, now {show(b, k)})" for k in bad)
        raise ValueError(f"trainer.resume: the config changed in keys that break resume: {parts}; "
                         "start a new run (trainer.out_dir) or restore them")


def config_digest(cfg_dict: dict) -> str:
    """sha256 hex of the canonical JSON of ``cfg_dict`` (sorted keys, compact separators)."""
    blob = json.dumps(cfg_dict, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------- driver state
def capture_rng() -> dict:
    """This process's RNG states: python ``random``, numpy's global RNG, torch's CPU generator."""
    import random

    import numpy as np
    import torch

    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def restore_rng(d: dict) -> None:
    """Set the RNG states ``capture_rng`` returned (the next draws repeat those after the capture)."""
    import random

    import numpy as np
    import torch

    random.setstate(d["python"])
    np.random.set_state(d["numpy"])
    torch.set_rng_state(d["torch"])


def save_trainer_state(folder: PathLike, state: dict) -> None:
    """Write ``state`` as ``folder/trainer_state.json`` (JSON: tuples become lists; a value JSON cannot
    hold is a TypeError) and this process's RNG states (``capture_rng``, taken now) as
    ``folder/rng.pt`` (torch.save). Each file is written under a temp name and renamed."""
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        text = json.dumps(state, indent=1, allow_nan=True)
    except TypeError as e:
        raise TypeError(f"trainer state: not JSON-serializable: {e}") from None
    tmp = folder / (TRAINER_STATE + ".tmp")
    _write_text_durable(tmp, text)
    os.replace(tmp, folder / TRAINER_STATE)
    tmp = folder / (RNG_FILE + ".tmp")
    torch.save(capture_rng(), tmp)
    os.replace(tmp, folder / RNG_FILE)


def load_trainer_state(folder: PathLike, restore: bool = True) -> dict:
    """The JSON state ``save_trainer_state`` wrote in ``folder``; with ``restore`` (default) this
    process's RNG states are set from ``folder/rng.pt`` too (torch.load, weights_only=False: the file
    is our own). A missing file is a FileNotFoundError naming it."""
    import torch

    folder = Path(folder)
    for name in (TRAINER_STATE, RNG_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"checkpoint {folder}: {name} missing")
    state = json.loads((folder / TRAINER_STATE).read_text())
    if restore:
        restore_rng(torch.load(folder / RNG_FILE, weights_only=False))
    return state
