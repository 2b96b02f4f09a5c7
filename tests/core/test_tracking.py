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
