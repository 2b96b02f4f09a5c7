"""judge_check with several judges side by side, and its one-line errors (unknown option, judge, file)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ascl_ray.reward.judge_base import JudgeOptionError
from ascl_ray.reward.judge_check import judge_option_sets
from ascl_ray.reward.judges import get_judge, judge_options


def _run(*args):
    return subprocess.run([sys.executable, "-m", "ascl_ray.reward.judge_check", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def xstest_file(data_dir):
    return str(next((data_dir / "xstest" / "model_completions").glob("*.csv")))


BASE = ["--response-col", "completion", "--label-col", "final_label", "--positive-label", "2_full_refusal",
        "3_partial_refusal", "--target", "refusal"]


def test_unknown_option_is_one_line_error(xstest_file):
    out = _run("--judge", "refusal", "--model-dir", "X", "--data", xstest_file, *BASE)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip() == ("judge_check: error: judge 'refusal' does not take option 'model_dir' "
                                  "(from --model-dir); its options: compliance_safe")
    out = _run("--judge", "refusal", "--option", "complience_safe=true", "--data", xstest_file, *BASE)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "'complience_safe'" in out.stderr
    out = _run("--judge", "refusal,nope", "--data", xstest_file, *BASE)
    assert out.returncode == 2 and "unknown judge 'nope'" in out.stderr and "Traceback" not in out.stderr
    out = _run("--judge", "refusal", "--option", "classifier.threshold=0.5", "--data", xstest_file, *BASE)
    assert out.returncode == 2 and "'classifier' is not in --judge" in out.stderr


def test_several_judges_side_by_side(xstest_file):
    out = _run("--judge", "refusal", "--judge", "refusal", "--option", "refusal.compliance_safe=true",
               "--data", xstest_file, "--prompt-col", "prompt", *BASE)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[1].split()[:3] == ["judge", "n", "accuracy"]
    assert [ln.split()[0] for ln in lines[2:4]] == ["refusal", "refusal"]
    rows = [json.loads(ln) for ln in lines if ln.startswith("{")]
    assert len(rows) == 2 and all(r["n"] == 450 and r["accuracy"] >= 0.97 for r in rows)


def test_option_routing():
    assert judge_options("refusal") == ["compliance_safe"]
    opts = judge_option_sets(["refusal", "classifier"], {"model_dir": ("D", "--model-dir")}, {})
    assert opts == {"refusal": {}, "classifier": {"model_dir": "D"}}
    with pytest.raises(JudgeOptionError, match="no judge of refusal,refusal_robust takes option 'nope'"):
        judge_option_sets(["refusal", "refusal_robust"], {"nope": (1, "--option nope=1")}, {})
    with pytest.raises(JudgeOptionError, match="judge 'refusal' does not take option 'model_dir'"):
        judge_option_sets(["refusal", "classifier"], {}, {"refusal": {"model_dir": "D"}})
    with pytest.raises(JudgeOptionError, match="'modeldir'"):
        get_judge("refusal_robust", modeldir="x")
