"""ascl_ray.checkpoint: layout, atomic writes, keep-K pruning, resume resolution, config checks and the
driver's state (JSON + RNG). Fast, no Ray."""

from __future__ import annotations

import json
import random

import pytest

from ascl_ray import checkpoint as ck


def _write(out, it, keep=3, payload="x"):
    return ck.write_checkpoint(out, it, lambda tmp: (tmp / "payload.txt").write_text(payload), keep=keep)


def _names(root):
    return sorted(p.name for p in (root / ck.CKPT_DIR).iterdir())


def test_layout_and_complete_marker(tmp_path):
    assert ck.CKPT_DIR == "checkpoints" and ck.ckpt_name(10) == "iter-000010" and ck.ckpt_name(0) == "iter-000000"
    with pytest.raises(ValueError):
        ck.ckpt_name(-1)
    seen = {}

    def write_fn(tmp):
        seen["tmp"] = tmp
        assert tmp.parent == tmp_path / "checkpoints" and tmp.name.startswith("iter-000010.tmp-")
        assert not (tmp / "COMPLETE").exists()          # COMPLETE comes after write_fn
        (tmp / "a.bin").write_bytes(b"1")

    final = ck.write_checkpoint(tmp_path, 10, write_fn, keep=2)
    assert final == tmp_path / "checkpoints" / "iter-000010" and not seen["tmp"].exists()
    assert json.loads((final / "COMPLETE").read_text()) == {"iteration": 10}
    assert (final / "a.bin").read_bytes() == b"1" and ck.checkpoint_iteration(final) == 10
    assert ck.list_checkpoints(tmp_path) == [(10, final)]
    assert _names(tmp_path) == ["iter-000010"]


def test_list_ignores_incomplete_and_temp_folders(tmp_path):
    assert ck.list_checkpoints(tmp_path) == [] and ck.list_checkpoints(tmp_path / "nope") == []
    _write(tmp_path, 2)
    _write(tmp_path, 12)
    root = tmp_path / "checkpoints"
    (root / "iter-000020").mkdir()                                  # no COMPLETE
    (root / "iter-000030.tmp-abc").mkdir()
    ((root / "iter-000030.tmp-abc") / "COMPLETE").write_text("{}")  # a temp name never counts
    (root / "notes.txt").write_text("x")
    (root / "iter-7").mkdir()
    assert [i for i, _ in ck.list_checkpoints(tmp_path)] == [2, 12]


def test_exception_in_write_fn_leaves_previous_checkpoints_and_no_partial_folder(tmp_path):
    first = _write(tmp_path, 1, payload="one")

    def boom(tmp):
        (tmp / "half.bin").write_bytes(b"partial")
        raise RuntimeError("learner died mid-save")

    with pytest.raises(RuntimeError, match="mid-save"):
        ck.write_checkpoint(tmp_path, 2, boom, keep=1)
    assert _names(tmp_path) == ["iter-000001"]
    assert (first / "payload.txt").read_text() == "one" and ck.list_checkpoints(tmp_path) == [(1, first)]
    # same iteration re-written after a failure: the old complete one survives a failing rewrite...
    with pytest.raises(RuntimeError):
        ck.write_checkpoint(tmp_path, 1, boom, keep=1)
    assert (first / "payload.txt").read_text() == "one" and _names(tmp_path) == ["iter-000001"]
    # ...and a successful rewrite replaces it
    _write(tmp_path, 1, payload="again")
    assert (first / "payload.txt").read_text() == "again"


def test_keep_k_prunes_oldest_complete_checkpoints(tmp_path):
    for it in (1, 2, 3, 4, 5):
        _write(tmp_path, it, keep=2)
        assert [i for i, _ in ck.list_checkpoints(tmp_path)] == list(range(max(1, it - 1), it + 1))
    assert _names(tmp_path) == ["iter-000004", "iter-000005"]
    root = tmp_path / "checkpoints"
    (root / "iter-000003").mkdir()                   # stale incomplete / temp leftovers of a killed writer
    (root / "iter-000004.tmp-zz").mkdir()
    _write(tmp_path, 6, keep=1)
    assert _names(tmp_path) == ["iter-000006"]
    with pytest.raises(ValueError, match="keep"):
        _write(tmp_path, 7, keep=0)
    assert _names(tmp_path) == ["iter-000006"]


def test_keep_never_drops_the_new_checkpoint_nor_later_ones(tmp_path):
    for it in (7, 8, 9):
        _write(tmp_path, it, keep=5)
    _write(tmp_path, 4, keep=1)          # resumed from an older checkpoint into the same run folder
    assert _names(tmp_path) == ["iter-000004", "iter-000007", "iter-000008", "iter-000009"]
    _write(tmp_path, 8, keep=2)          # replaced; 7 and 8 are the newest two up to 8, 4 goes
    assert _names(tmp_path) == ["iter-000007", "iter-000008", "iter-000009"]


def test_resolve_resume_every_case(tmp_path):
    run = tmp_path / "run"
    assert ck.resolve_resume("never", run) is None
    assert ck.resolve_resume("auto", run) is None                   # no folder at all
    run.mkdir()
    assert ck.resolve_resume("auto", run) is None                   # no checkpoints/
    (run / "checkpoints" / "iter-000009").mkdir(parents=True)
    assert ck.resolve_resume("auto", run) is None                   # only incomplete ones
    with pytest.raises(FileNotFoundError, match=r"^trainer.resume: run folder .* no complete checkpoint.*"
                                                r"iter-000009 \(incomplete\)"):
        ck.resolve_resume(str(run), tmp_path / "other")
    c3, c5 = _write(run, 3), _write(run, 5)
    assert ck.resolve_resume("auto", run) == c5
    assert ck.resolve_resume("never", run) is None
    assert ck.resolve_resume(str(c3), tmp_path / "other") == c3     # a complete checkpoint folder
    assert ck.resolve_resume(str(run), tmp_path / "other") == c5    # a run folder: its newest
    with pytest.raises(FileNotFoundError, match=r"^trainer.resume: .*iter-000009 is an incomplete checkpoint "
                                                r"\(no COMPLETE file.*complete ones there: iter-000003, iter-000005"):
        ck.resolve_resume(str(run / "checkpoints" / "iter-000009"), run)
    with pytest.raises(FileNotFoundError, match=r"^trainer.resume: .*missing does not exist"):
        ck.resolve_resume(str(tmp_path / "missing"), run)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"^trainer.resume: .*file.txt is a file"):
        ck.resolve_resume(str(tmp_path / "file.txt"), run)
    (tmp_path / "plain").mkdir()
    with pytest.raises(FileNotFoundError, match=r"^trainer.resume: .*plain is neither a complete checkpoint"):
        ck.resolve_resume(str(tmp_path / "plain"), run)
    with pytest.raises(FileNotFoundError, match=r"^trainer.resume: empty"):
        ck.resolve_resume("", run)


def _cfg(**over):
    cfg = {"model": {"name": "tiny", "path": "artifacts/tiny-model", "build_tiny": True},
           "learner": {"num_actors": 2, "dtype": "float32", "lr": 3e-4, "zero_stage": 3},
           "rollout": {"n_samples": 4, "temperature": 1.0},
           "data": {"prompts_per_iter": 16, "source": "synthetic", "path": None, "n_math": 60, "eval_frac": 0.2},
           "trainer": {"seed": 0, "iterations": 40, "out_dir": "runs/x"}}
    for dotted, v in over.items():
        sec, key = dotted.split("__")
        cfg[sec][key] = v
    return cfg


def test_resume_keys_changed_keys_and_check(tmp_path):
    keys = ck.resume_keys(_cfg())
    assert set(keys) == set(ck.RESUME_KEYS) and keys["data.path"] is None and keys["trainer.seed"] == 0
    saved = json.loads(json.dumps(keys))                               # what a checkpoint holds
    assert ck.changed_keys(saved, ck.resume_keys(_cfg(learner__lr=1e-5, trainer__iterations=80))) == []
    ck.check_resume_config(saved, ck.resume_keys(_cfg(trainer__out_dir="elsewhere")))
    now = ck.resume_keys(_cfg(trainer__seed=1, learner__num_actors=4))
    assert ck.changed_keys(saved, now) == ["learner.num_actors", "trainer.seed"]
    with pytest.raises(ValueError) as e:
        ck.check_resume_config(saved, now)
    assert str(e.value) == ("trainer.resume: the config changed in keys that break resume: learner.num_actors "
                            "(saved 2, now 4), trainer.seed (saved 0, now 1); start a new run (trainer.out_dir) "
                            "or restore them")
    less = dict(saved)
    del less["data.n_math"]
    assert ck.changed_keys(less, saved) == ["data.n_math"] and ck.changed_keys(saved, less) == ["data.n_math"]
    with pytest.raises(ValueError, match=r"data.n_math \(saved <missing>, now 60\)"):
        ck.check_resume_config(less, saved)
    # a checkpoint of one ZeRO stage does not load under another (partitioned vs whole optimizer state)
    assert ck.changed_keys(saved, ck.resume_keys(_cfg(learner__zero_stage=0))) == ["learner.zero_stage"]
    # whole nested config dicts are accepted too
    assert ck.changed_keys(_cfg(), _cfg(data__source="jsonl")) == ["data.source"]
    d1, d2 = ck.config_digest(_cfg()), ck.config_digest(json.loads(json.dumps(_cfg())))
    assert d1 == d2 and len(d1) == 64 and d1 != ck.config_digest(_cfg(learner__lr=1.0))


def test_rng_round_trip():
    import numpy as np
    import torch

    saved = ck.capture_rng()
    first = (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist())
    random.random(), np.random.rand(5), torch.rand(5)        # move on
    ck.restore_rng(saved)
    assert (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()) == first


def test_trainer_state_round_trip_with_a_real_prompt_sampler(tmp_path):
    import torch

    from ascl_ray.data.sampler import PromptSampler
    from ascl_ray.data.synthetic import synthetic_prompts

    rows = synthetic_prompts(n_math=12, seed=0)
    s = PromptSampler(rows, per_iter=5, seed=3)
    for _ in range(7):                                     # mid-epoch in every type
        s.next_batch()
    state = {"iteration": 7, "sampler": s.state_dict(), "resume_keys": {"trainer.seed": 0}, "nested": (1, 2)}
    ck.save_trainer_state(tmp_path, state)
    assert (tmp_path / "trainer_state.json").is_file() and (tmp_path / "rng.pt").is_file()
    assert not list(tmp_path.glob("*.tmp"))
    expect_rng = torch.rand(4).tolist()                    # the draws right after the save
    expect = [s.next_batch() for _ in range(3)]

    loaded = ck.load_trainer_state(tmp_path)               # restores the RNG too
    assert torch.rand(4).tolist() == expect_rng
    assert loaded["iteration"] == 7 and loaded["nested"] == [1, 2]
    s2 = PromptSampler(rows, per_iter=5, seed=999)
    s2.load_state_dict(loaded["sampler"])
    got = [s2.next_batch() for _ in range(3)]
    assert [([r.prompt_id for r in b], g) for b, g in got] == [([r.prompt_id for r in b], g) for b, g in expect]

    torch.rand(2)
    ck.load_trainer_state(tmp_path, restore=False)         # JSON only: the RNG stream is left alone
    assert torch.rand(4).tolist() != expect_rng
    with pytest.raises(TypeError, match="trainer state: not JSON-serializable"):
        ck.save_trainer_state(tmp_path / "bad", {"x": object()})
    with pytest.raises(FileNotFoundError, match="trainer_state.json missing"):
        ck.load_trainer_state(tmp_path / "nothing")


def test_checkpoint_module_is_pure():
    import subprocess
    import sys

    code = ("import sys, ascl_ray.checkpoint; "
            "bad = [m for m in ('ray', 'vllm', 'deepspeed', 'torch') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------------------------------------- kill -9
# A separate process writes a checkpoint and blocks at a chosen point; the test SIGKILLs it there (no
# exception handler, no finally: what a preempted node or an OOM kill does) and checks what is left.
_CHILD = r'''
import os, shutil, sys, time
from pathlib import Path
from ascl_ray import checkpoint as ck

out, it, keep, mode, ready = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], Path(sys.argv[5])

def block():
    ready.write_text(str(os.getpid()))
    time.sleep(600)

def payload(tmp):
    ck.save_trainer_state(tmp, {"iteration": it})
    (tmp / "payload.txt").write_text(f"new-{it}")

if mode == "write":            # killed inside write_fn: some files written, some not
    def write_fn(tmp):
        ck.save_trainer_state(tmp, {"iteration": it})
        (tmp / "learner").mkdir()
        (tmp / "learner" / "shard-0.pt").write_bytes(b"0" * 4096)
        block()
    ck.write_checkpoint(out, it, write_fn, keep=keep)
else:                          # killed inside a delete: every file but COMPLETE gone first (the worst order)
    def rmtree(path, *a, **k):
        for f in sorted(Path(path).rglob("*"), reverse=True):
            if f.is_file() and f.name != ck.COMPLETE:
                f.unlink()
        block()
    shutil.rmtree = rmtree     # the one atomic_directory and checkpoint.py call
    ck.write_checkpoint(out, it, payload, keep=keep)
'''


def _killed_while(tmp_path, mode, it, keep):
    """Run the child writing checkpoint ``it`` of ``tmp_path / "run"``; SIGKILL it where it blocks."""
    import os
    import signal
    import subprocess
    import sys
    import time

    ready = tmp_path / f"ready-{mode}-{it}"
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(tmp_path / "run"), str(it), str(keep), mode,
                              str(ready)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert child.poll() is None, f"child exited early: {child.stderr.read()}"
        assert time.monotonic() < deadline, "child never reached the kill point"
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL


def _full(run, it, keep, payload=None):
    """Checkpoint ``it`` with the driver's state files and a payload (what a resume reads)."""
    def write_fn(tmp):
        ck.save_trainer_state(tmp, {"iteration": it})
        (tmp / "payload.txt").write_text(payload or f"old-{it}")
    return ck.write_checkpoint(run, it, write_fn, keep=keep)


def _intact(folder, it, payload=None):
    assert ck.checkpoint_iteration(folder) == it
    assert ck.load_trainer_state(folder, restore=False)["iteration"] == it
    assert (folder / "payload.txt").read_text() == (payload or f"old-{it}")


def test_kill_during_write_keeps_previous_checkpoint_and_next_write_cleans_up(tmp_path):
    run = tmp_path / "run"
    _full(run, 1, keep=2)
    c2 = _full(run, 2, keep=2)
    _killed_while(tmp_path, "write", 3, keep=1)            # keep=1: pruning must not have run yet
    left = [p.name for p in (run / "checkpoints").iterdir() if ".tmp-" in p.name]
    assert len(left) == 1 and left[0].startswith("iter-000003.tmp-")
    assert not (run / "checkpoints" / left[0] / "COMPLETE").exists()
    assert [i for i, _ in ck.list_checkpoints(run)] == [1, 2]
    assert ck.resolve_resume("auto", run) == c2 and ck.resolve_resume(str(run), tmp_path) == c2
    _intact(c2, 2)
    # the resumed run (from 2) writes 3 again: the killed writer's temp folder goes, 2 goes only now
    c3 = _full(run, 3, keep=1, payload="new-3")
    assert _names(run) == ["iter-000003"]
    _intact(c3, 3, "new-3")


def test_kill_while_replacing_the_same_iteration_never_leaves_a_hollow_checkpoint(tmp_path):
    """A run resumed from 1 into a folder that holds 2 (another timeline) writes 2 again. Killed while
    the old 2 is being deleted, the folder named iter-000002 must be the new one or a complete old one,
    never the old one's COMPLETE without its files."""
    run = tmp_path / "run"
    _full(run, 1, keep=3)
    _full(run, 2, keep=3)
    _killed_while(tmp_path, "delete", 2, keep=3)
    for it, folder in ck.list_checkpoints(run):            # every checkpoint that looks complete is complete
        assert (folder / "payload.txt").is_file(), f"{folder.name} holds COMPLETE but lost its files"
    got = ck.resolve_resume("auto", run)
    assert got == run / "checkpoints" / "iter-000002"
    _intact(got, 2, "new-2")
    _full(run, 3, keep=3)
    assert _names(run) == ["iter-000001", "iter-000002", "iter-000003"]       # the half-deleted old 2 is gone


def test_kill_while_pruning_keeps_the_newest_checkpoint(tmp_path):
    run = tmp_path / "run"
    _full(run, 1, keep=5)
    _killed_while(tmp_path, "delete", 2, keep=1)           # 2 is in place, then 1 is pruned: killed mid-delete
    assert not (run / "checkpoints" / "iter-000001" / "COMPLETE").exists()   # COMPLETE went first
    assert [i for i, _ in ck.list_checkpoints(run)] == [2]
    _intact(ck.resolve_resume("auto", run), 2, "new-2")
    _full(run, 3, keep=1)
    assert _names(run) == ["iter-000003"]
