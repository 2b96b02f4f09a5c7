import json

from ascl_ray.tracking import PhaseTimer, Tracker, format_headline


def test_headline_puts_consultation_first_with_per_type_rates():
    line = format_headline({"reward/mean": 0.5, "reward/math": 0.25, "consultation/rate": 0.125,
                            "consultation/harmful": 0.375, "consultation/benign_sensitive": 0.0})
    assert line.startswith("consult=0.12 [harm=0.38 benign=0.00]")
    assert "reward=0.500 [math=0.25]" in line


def test_tracker_writes_jsonl_and_plot_without_wandb(tmp_path, capsys):
    tr = Tracker(str(tmp_path), {"a": 1}, mode="disabled", progress=False)
    timer = PhaseTimer()
    with timer("rollout"):
        pass
    for step in range(3):
        tr.log({"reward/mean": 0.1 * step, "consultation/rate": 0.5, "timing/rollout": timer.times["rollout"]}, step)
    assert "[iter   2] consult=0.50" in capsys.readouterr().out
    png = tr.plot()
    tr.close()
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2] and rows[2]["reward/mean"] == 0.2
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_tracker_wandb_offline(tmp_path):
    tr = Tracker(str(tmp_path), {"lr": 1e-3}, mode="offline", progress=False)
    tr.log({"reward/mean": 0.3, "consultation/rate": 0.1}, 0)
    tr.close()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert runs and any(p.suffix == ".wandb" for p in runs[0].iterdir())


def _rows(path):
    return [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines()]


def _run(tmp_path, steps, **kw):
    tr = Tracker(str(tmp_path), {"a": 1}, mode="disabled", progress=False, **kw)
    for s in steps:
        tr.log({"reward/mean": float(s)}, s)
    return tr


def test_tracker_without_resume_truncates_and_has_no_wandb_id(tmp_path):
    _run(tmp_path, range(3)).close()
    tr = _run(tmp_path, [0])
    assert tr.wandb_id is None
    tr.close()
    assert [r["step"] for r in _rows(tmp_path)] == [0]


def test_tracker_resume_keeps_earlier_rows_and_appends(tmp_path):
    _run(tmp_path, range(5)).close()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "reward/me')                  # a crash mid-write: torn last line
    tr = Tracker(str(tmp_path), {"a": 1}, mode="disabled", progress=False, resume_step=3)
    assert [r["step"] for r in tr.history] == [0, 1, 2]
    assert [r["step"] for r in _rows(tmp_path)] == [0, 1, 2]     # rewritten before any new row
    assert not (tmp_path / "metrics.jsonl.tmp").exists()
    for s in (3, 4):
        tr.log({"reward/mean": 10.0 + s}, s)
    tr.close()
    rows = _rows(tmp_path)
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4] and rows[1]["reward/mean"] == 1.0
    assert rows[4]["reward/mean"] == 14.0
    # resuming a run folder that has no metrics yet
    tr = Tracker(str(tmp_path / "new"), {}, mode="disabled", progress=False, resume_step=7)
    assert tr.history == []
    tr.close()
    assert (tmp_path / "new" / "metrics.jsonl").read_text() == ""


def test_tracker_rewind_drops_rows_from_step_on(tmp_path):
    tr = _run(tmp_path, range(6))
    tr.rewind(4)
    assert [r["step"] for r in tr.history] == [0, 1, 2, 3]
    assert [r["step"] for r in _rows(tmp_path)] == [0, 1, 2, 3]
    tr.log({"reward/mean": 40.0}, 4)
    tr.rewind(10)                                          # nothing at or after 10: unchanged
    tr.close()
    rows = _rows(tmp_path)
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4] and rows[-1]["reward/mean"] == 40.0


def test_tracker_wandb_id_continues_the_run(tmp_path):
    tr = Tracker(str(tmp_path), {"lr": 1e-3}, mode="offline", progress=False)
    rid = tr.wandb_id
    assert isinstance(rid, str) and rid
    tr.log({"reward/mean": 0.3}, 0)
    tr.close()
    tr = Tracker(str(tmp_path), {"lr": 1e-3}, mode="offline", progress=False, resume_step=1, wandb_id=rid)
    assert tr.wandb_id == rid and [r["step"] for r in tr.history] == [0]
    tr.log({"reward/mean": 0.4}, 1)
    tr.close()
    assert [r["step"] for r in _rows(tmp_path)] == [0, 1]
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(f"-{rid}" in p.name for p in runs)    # one wandb run id across the resume


def _batches(path):
    return [json.loads(x) for x in (path / "batches.jsonl").read_text().splitlines()]


def test_tracker_batches_follow_resume_and_rewind(tmp_path):
    """batches.jsonl (what each step trained on) keeps exactly the steps metrics.jsonl keeps."""
    tr = Tracker(str(tmp_path), {}, mode="disabled", progress=False)
    for s in range(4):
        tr.log({"reward/mean": float(s)}, s, batch={"prompt_ids": [f"p{s}"], "rollouts": ["ab"]})
    tr.close()
    assert [(r["step"], r["prompt_ids"]) for r in _batches(tmp_path)] == [(i, [f"p{i}"]) for i in range(4)]
    assert "prompt_ids" not in _rows(tmp_path)[0]                     # ids stay out of the metrics
    tr = Tracker(str(tmp_path), {}, mode="disabled", progress=False, resume_step=2)
    assert [r["step"] for r in _batches(tmp_path)] == [0, 1]         # dropped before any new row
    for s in (2, 3, 4):
        tr.log({"reward/mean": 0.0}, s, batch={"prompt_ids": [f"q{s}"]})
    tr.rewind(4)
    tr.log({"reward/mean": 0.0}, 4, batch={"prompt_ids": ["again"]})
    tr.close()
    assert [(r["step"], r["prompt_ids"]) for r in _batches(tmp_path)] == [
        (0, ["p0"]), (1, ["p1"]), (2, ["q2"]), (3, ["q3"]), (4, ["again"])]
    assert not list(tmp_path.glob("*.tmp"))
    _run(tmp_path, [0]).close()                                        # a fresh run starts both files over
    assert (tmp_path / "batches.jsonl").read_text() == ""


def test_batch_record_groups_and_digests():
    from ascl_ray.batch import PromptRow, Rollout
    from ascl_ray.driver import batch_record

    def ro(gid, pid, resp, lp):
        return Rollout(group_id=gid, prompt=PromptRow(pid, "q?", "harmful"), prompt_ids=[1, 2],
                       response_ids=resp, loss_mask=[1] * len(resp), rollout_logprobs=lp)

    a = [ro(4, "h1", [5], [-0.5]), ro(4, "h1", [6], [-0.25]), ro(9, "h7", [5], [-0.5])]
    rec = batch_record(a)
    assert rec["prompt_ids"] == ["h1", "h7"] and rec["group_ids"] == [4, 9]
    assert len(rec["rollouts"]) == 3 and rec["rollouts"][0] != rec["rollouts"][1]
    b = [ro(4, "h1", [5], [-0.5]), ro(4, "h1", [6], [-0.25 + 1e-12]), ro(9, "h7", [5], [-0.5])]
    assert [x == y for x, y in zip(rec["rollouts"], batch_record(b)["rollouts"])] == [True, False, True]
