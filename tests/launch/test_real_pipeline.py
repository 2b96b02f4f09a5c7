"""launch/real_pipeline.py: stage skipping, --force, --only, --dry-run and failure/resume, with tiny
stand-in stages (``python -c`` commands that log their run and write an output); the real stage commands
are checked to compose as valid configs (no run); the summary is built from real eval reports
(``eval.metrics.summarize`` + ``eval.report.write_report`` on hand-made records)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from launch import real_pipeline as rp  # noqa: E402

PY = sys.executable


def _standin(log: Path, name: str, fail_flag: Path | None = None) -> list[str]:
    """Appends NAME to LOG; exits 3 while FAIL_FLAG exists."""
    code = (f"import pathlib,sys\n"
            f"f={str(fail_flag)!r}\n"
            f"if f != 'None' and pathlib.Path(f).exists(): print('stand-in {name} failing'); sys.exit(3)\n"
            f"open({str(log)!r},'a').write('{name}\\n')\n")
    return [PY, "-c", code]


def _stages(out: Path, log: Path, fail_at: str | None = None, flag: Path | None = None) -> list[rp.Stage]:
    return [rp.Stage(n, cmd=_standin(log, n, flag if n == fail_at else None)) for n in rp.STAGES]


def _runs(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def test_markers_skip_missing_rerun_and_force(tmp_path, capsys):
    out, log = tmp_path / "out", tmp_path / "log.txt"
    assert rp.run_pipeline(_stages(out, log), out) == 0
    assert _runs(log) == list(rp.STAGES)
    for n in rp.STAGES:
        mk = json.loads(rp.marker(out, n).read_text())
        assert mk["stage"] == n and mk["seconds"] >= 0 and mk["cmd"][0] == PY
    assert (out / "logs" / "data.log").exists()
    # every marker present: nothing reruns
    assert rp.run_pipeline(_stages(out, log), out) == 0
    assert _runs(log) == list(rp.STAGES)
    # a missing marker: only that stage reruns
    rp.marker(out, "sft").unlink()
    assert rp.run_pipeline(_stages(out, log), out) == 0
    assert _runs(log) == list(rp.STAGES) + ["sft"]
    # --force reruns one done stage (downstream markers kept)
    assert rp.run_pipeline(_stages(out, log), out, force=["demos"]) == 0
    assert _runs(log) == list(rp.STAGES) + ["sft", "demos"]
    # --only runs only the named stage (and only if not done); with --force it reruns
    assert rp.run_pipeline(_stages(out, log), out, only=["rl"]) == 0
    assert rp.run_pipeline(_stages(out, log), out, only=["rl"], force=["rl"]) == 0
    assert _runs(log)[-1] == "rl" and _runs(log).count("rl") == 2
    with pytest.raises(ValueError, match="unknown stage"):
        rp.run_pipeline(_stages(out, log), out, force=["nope"])


def test_failing_stage_stops_without_marker_and_rerun_resumes_there(tmp_path):
    out, log, flag = tmp_path / "out", tmp_path / "log.txt", tmp_path / "fail"
    flag.touch()
    rc = rp.run_pipeline(_stages(out, log, "rl", flag), out)
    assert rc == 3
    assert _runs(log) == list(rp.STAGES[:rp.STAGES.index("rl")])      # nothing after rl ran
    assert not rp.marker(out, "rl").exists() and not rp.marker(out, "eval_rl").exists()
    assert "stand-in rl failing" in (out / "logs" / "rl.log").read_text()
    flag.unlink()                                                       # "fixed": the rerun resumes at rl
    assert rp.run_pipeline(_stages(out, log, "rl", flag), out) == 0
    assert _runs(log) == list(rp.STAGES[:rp.STAGES.index("rl")]) + ["rl", "eval_rl", "summary"]


def test_cli_stand_ins_dry_run_and_in_process_failure(tmp_path, capsys):
    out, log = tmp_path / "out", tmp_path / "log.txt"
    cmds = [a for n in rp.STAGES if n != "summary" for a in ("--cmd", f"{n}={shlex.join(_standin(log, n))}")]
    assert rp.main(["--out", str(out), "--dry-run", *cmds]) == 0
    printed = capsys.readouterr().out
    assert not log.exists() and not (out / "done").exists()
    assert all(f"[{n}] run " in printed for n in rp.STAGES)
    # the real summary stage fails (no eval report: the stand-ins wrote none) -> no marker, exit 1
    assert rp.main(["--out", str(out), *cmds]) == 1
    assert _runs(log) == [n for n in rp.STAGES if n != "summary"] and not rp.marker(out, "summary").exists()
    assert rp.main(["--out", str(out), "--dry-run", *cmds]) == 0
    printed = capsys.readouterr().out
    assert "[data] skip (done)" in printed and "[summary] run " in printed
    assert rp.main(["--out", str(out), "--only", "nope"]) == 2


def test_real_commands_and_sizes(tmp_path):
    """The real stage commands: RL from the SFT checkpoint with checkpointing and resume=auto, evals with a
    seeded >= 30 per benchmark subsample at three model paths; --set overrides sizes; every ascl-ray
    command's Hydra overrides compose into a valid config (nothing runs)."""
    from ascl_ray.cli import compose
    from ascl_ray.eval.harness import compose_eval

    out = tmp_path / "o"
    s = rp.sizes_from({"rl_iterations": "7", "answers": "a.jsonl"})
    assert s.rl_iterations == 7 and s.answers == "a.jsonl" and rp.Sizes().eval_limit >= 30
    with pytest.raises(SystemExit):
        rp.sizes_from({"nope": "1"})
    st = {x.name: x for x in rp.build_stages(out, s, extra={"rl": ["learner.lr=1e-6"]})}
    assert st["data"].cmd[1:] == ["-m", "ascl_ray.data.pool", "--out", str(out / "pool.jsonl"), "--seed", "0"]
    assert "--answers" in st["demos"].cmd and str(out / "pool.jsonl") in st["demos"].cmd
    rl = st["rl"].cmd
    for o in (f"model.path={out / 'sft' / 'final'}", "trainer.resume=auto", "trainer.save_every=5",
              "trainer.iterations=7", f"data.path={out / 'pool.jsonl'}", "method=ascl", "algorithm=ifpo"):
        assert o in rl
    assert rl[-1] == "learner.lr=1e-6"
    paths = {"eval_zs": None, "eval_sft": out / "sft" / "final", "eval_rl": out / "rl" / "final"}
    for n, mp in paths.items():
        cmd = st[n].cmd
        assert ("model.path=" + str(mp) in cmd) if mp else not any(c.startswith("model.path=") for c in cmd)
        cfg, ecfg = compose_eval(cmd[cmd.index("eval") + 1:])
        assert ecfg.limit == 30 and ecfg.seed == 0 and list(ecfg.methods) == ["ascl"]
        assert list(ecfg.suites) == ["safety", "over_refusal", "utility"]
    cfg = compose(rl[rl.index("train") + 1:])
    assert cfg.trainer.save_every == 5 and cfg.rollout.n_samples == 4 and cfg.data.source == "jsonl"
    sft = st["sft"].cmd
    compose([a for a in sft[sft.index("sft") + 1:] if "=" in a and not a.startswith("-")])
    with pytest.raises(ValueError, match="unknown stage"):
        rp.build_stages(out, s, commands={"nope": ["true"]})
    # the answers stage: the model's own judge-accepted answers to the benign look-alikes feed the demos
    st = {x.name: x for x in rp.build_stages(out, rp.Sizes())}
    ans = st["answers"].cmd
    assert "cada-chains" in ans and "data.types=[benign_sensitive]" in ans and "method=plain" in ans
    assert ans[ans.index("--out") + 1] == str(out / "answers.jsonl")
    assert st["demos"].cmd[st["demos"].cmd.index("--answers") + 1] == str(out / "answers.jsonl")
    cfg = compose([a for a in ans[ans.index("cada-chains") + 1:ans.index("--samples")]])
    assert list(cfg.data.types) == ["benign_sensitive"]
    off = {x.name: x for x in rp.build_stages(out, rp.sizes_from({"self_answers": "false"}))}
    assert "cada-chains" not in off["answers"].cmd and "--answers" not in off["demos"].cmd
    with pytest.raises(SystemExit):
        rp.sizes_from({"self_answers": "maybe"})


def _report(out_dir: Path, safe: list[bool], refuse: list[bool], correct: list[bool], consult: float):
    from ascl_ray.eval.metrics import summarize
    from ascl_ray.eval.report import write_report

    recs = []
    for i, v in enumerate(safe):
        recs.append({"benchmark": "harmbench", "prompt_id": f"h{i}", "prompt_type": "harmful", "sample_idx": 0,
                     "safe": v, "refusal": v, "consulted": i < consult * len(safe), "n_calls": 1, "response_len": 9})
    for i, v in enumerate(refuse):
        recs.append({"benchmark": "xstest_safe", "prompt_id": f"b{i}", "prompt_type": "benign_sensitive",
                     "sample_idx": 0, "safe": True, "refusal": v, "consulted": False, "n_calls": 0,
                     "response_len": 9})
    for i, v in enumerate(correct):
        recs.append({"benchmark": "gsm8k", "prompt_id": f"m{i}", "prompt_type": "math", "sample_idx": 0,
                     "correct": v, "consulted": False, "n_calls": 0, "response_len": 9})
    write_report({"ascl": summarize(recs, 1)}, out_dir, {"model": "x"}, plot=False)


def test_summary_collects_three_reports_with_ci_and_wall_times(tmp_path):
    out = tmp_path / "o"
    _report(out / "eval" / "zero_shot", [False] * 30, [False] * 30, [False] * 30, 0.0)
    _report(out / "eval" / "sft", [True] * 20 + [False] * 10, [True] * 3 + [False] * 27, [False] * 30, 1.0)
    _report(out / "eval" / "rl", [True] * 27 + [False] * 3, [False] * 30, [True] * 3 + [False] * 27, 0.5)
    for n, sec in (("sft", 120.0), ("rl", 4800.0)):
        rp._write_atomic(rp.marker(out, n), json.dumps({"stage": n, "seconds": sec}))
    log = tmp_path / "log.txt"
    stages = [x if x.name == "summary" else rp.Stage(x.name, cmd=_standin(log, x.name))
              for x in rp.build_stages(out, rp.Sizes())]
    assert rp.run_pipeline(stages, out, only=["summary"]) == 0
    data = json.loads((out / "summary.json").read_text())
    assert list(data["evals"]) == ["zero_shot", "sft", "rl"]
    h = data["evals"]["rl"]["ascl"]["harmful"]["safety_rate"]
    assert h["value"] == pytest.approx(0.9) and h["lo"] < 0.9 < h["hi"] and h["n"] == 30
    assert data["evals"]["sft"]["ascl"]["benign_sensitive"]["refusal_rate"]["value"] == pytest.approx(0.1)
    assert data["evals"]["rl"]["ascl"]["math"]["avg_at_k"]["value"] == pytest.approx(0.1)
    assert data["wall_seconds"]["rl"] == 4800.0 and "summary" not in data["wall_seconds"]
    md = (out / "summary.md").read_text()
    assert "| rl | ascl | 90.0 [" in md and "(n=30)" in md and "| rl | 80.0 min |" in md
    assert "over-refusal" in md and "consultation" in md
