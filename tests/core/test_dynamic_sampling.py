"""DAPO dynamic sampling in the driver, around fake rollout/reward parts (unit test of the code
around the real actors; the real path runs in tests/e2e)."""

from ascl_ray.batch import Rollout
from ascl_ray.cli import compose
from ascl_ray.data import synthetic
from ascl_ray.driver import PromptSampler, Trainer
from ascl_ray.runtime import Stack
from ascl_ray.tracking import PhaseTimer


class FakeRollout:
    def __init__(self, G):
        self.G, self.calls = G, 0

    def generate(self, rows, gids, seed):
        self.calls += 1
        return [Rollout(g, r, [1, 2], [3], [1], [-0.1]) for r, g in zip(rows, gids) for _ in range(self.G)]


class FakePool:
    """Groups with an even id get all-equal rewards; odd ids get mixed rewards."""

    def score(self, items):
        raise AssertionError("driver.score is patched below")


def _trainer(monkeypatch, rounds):
    import ascl_ray.driver as drv

    def fake_score(pool, rollouts):
        for k, r in enumerate(rollouts):
            r.reward = 1.0 if r.group_id % 2 == 0 else float(k % 2)
            r.reward_info = {"valid": True}

    monkeypatch.setattr(drv, "score", fake_score)
    cfg = compose(["algorithm.dynamic_sampling=true", f"algorithm.dynamic_sampling_max_rounds={rounds}",
                   "rollout.n_samples=4"])
    tr = object.__new__(Trainer)
    tr.cfg = cfg
    tr.sampler = PromptSampler(synthetic.synthetic_prompts(n_math=12), cfg.data.prompts_per_iter, 0)
    tr.stack = Stack(cfg, "", rollout=FakeRollout(4), pool=FakePool())
    return tr, fake_score


def _first_batch(monkeypatch, rounds):
    """Run dynamic sampling on the first scored batch: (trainer, its group ids, kept rollouts, stats)."""
    tr, fake_score = _trainer(monkeypatch, rounds)
    rows, gids = tr.sampler.next_batch()
    ros = tr.rollout.generate(rows, gids, 0)
    fake_score(None, ros)
    out, stats = tr._dynamic_sampling(ros, 0, PhaseTimer())
    return tr, gids, out, stats


def test_refills_with_informative_groups(monkeypatch):
    tr, _, out, stats = _first_batch(monkeypatch, rounds=2)
    groups = {r.group_id for r in out}
    n = tr.cfg.data.prompts_per_iter
    assert len(out) == n * 4 and len(groups) == n
    assert all(g % 2 == 1 for g in groups)  # only informative (odd) groups
    assert stats["dynamic_sampling/informative_groups"] == 1.0 and stats["dynamic_sampling/extra_rounds"] == 1.0


def test_pads_with_uniform_groups_when_rounds_run_out(monkeypatch):
    tr, gids, out, stats = _first_batch(monkeypatch, rounds=0)
    n = tr.cfg.data.prompts_per_iter
    odd = sum(g % 2 == 1 for g in gids)          # group ids 0..n-1: the odd ones are informative
    assert len(out) == n * 4 and stats["dynamic_sampling/informative_groups"] == odd / n
    assert tr.rollout.calls == 1
