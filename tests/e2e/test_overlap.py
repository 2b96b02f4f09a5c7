"""Rollout/training overlap end to end (real Ray + vLLM + DeepSpeed ZeRO-3, the tiny model).

1. ``trainer.mode=async trainer.max_staleness=2`` over 4 iterations: the staleness of every batch stays within
   the bound (and reaches it), and each rollout's ``policy_version`` is the version whose weights produced it:
   its sampling log-probs match an HF model loaded with the learner's export of THAT version, and not the
   learner's weights it is trained with.
2. ``async`` with ``max_staleness=0`` is the ``sync`` run: the same rewards per iteration and the same weights
   (``rollout.seed_per_request=true``: with vLLM's one global generator two fresh runs at the same seed do
   not sample alike, see tests/e2e/test_resume_equivalence.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SMALL = ["data.prompts_per_iter=4", "rollout.n_samples=4", "tracking.progress=false", "tracking.wandb_mode=disabled",
         "learner.lr=3e-3"]      # a large step: consecutive versions differ clearly in their log-probs


def _hf_logprobs(path, seqs):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    out = []
    with torch.no_grad():
        for s in seqs:
            lp = torch.log_softmax(model(torch.tensor([s])).logits[0, :-1], -1)
            out.append(lp.gather(-1, torch.tensor(s[1:])[:, None])[:, 0].tolist())
    return out


def _gap(rollouts, lps):
    """Max |sampling log-prob - model log-prob| over the model-generated tokens of ``rollouts``."""
    worst = 0.0
    for r, lp in zip(rollouts, lps):
        P = len(r.prompt_ids)
        for j, (m, x) in enumerate(zip(r.loss_mask, r.rollout_logprobs)):
            if m:
                worst = max(worst, abs(x - lp[P - 1 + j]))
    return worst


def test_async_staleness_bound_and_versions_checked_by_logprobs(tiny_model_path, tmp_path):
    from ascl_ray.cli import compose
    from ascl_ray.driver import Trainer

    cfg = compose([f"model.path={tiny_model_path}", f"trainer.out_dir={tmp_path / 'run'}", "trainer.iterations=4",
                   "trainer.mode=async", "trainer.max_staleness=2", *SMALL])
    tr = Trainer(cfg)
    versions, trained, metrics = {}, {}, []
    try:
        tr.setup()
        update = tr.learners.update

        def capture(rollouts, **kw):
            trained[len(metrics)] = list(rollouts)
            return update(rollouts, **kw)

        tr.learners.update = capture
        for it in range(4):
            versions[it] = tr.learners.save_hf(str(tmp_path / f"v{it}"))   # learner version it (it updates taken)
            metrics.append(tr.step(it))
            if it == 1:
                # the batch generated ahead (2, sampled with version 0) goes into the checkpoint and comes back
                # from it: restored into this trainer, iteration 2 trains on exactly those rollouts
                path = tr.save_checkpoint(2)
                saved = [(r.prompt_ids, r.response_ids, r.rollout_logprobs) for r in tr.ahead["rollouts"]]
                tr.ahead = None
                tr._restore(Path(path))
                assert tr.ahead["it"] == 2 and tr.ahead["version"] == 0
                assert [(r.prompt_ids, r.response_ids, r.rollout_logprobs) for r in tr.ahead["rollouts"]] == saved
    finally:
        tr.close()
    assert [(r.prompt_ids, r.response_ids, r.rollout_logprobs) for r in trained[2]] == saved
    stale = [m["overlap/staleness"] for m in metrics]
    assert stale == [0.0, 1.0, 2.0, 1.0], stale          # batch 3 launched after the sync of version 2
    assert [m["overlap/synced"] for m in metrics] == [0.0, 1.0, 0.0, 1.0]
    for it in range(1, 4):
        ros = trained[it]
        v = int(it - stale[it])
        assert {r.policy_version for r in ros} == {v}
        seqs = [r.prompt_ids + r.response_ids for r in ros]
        own = _gap(ros, _hf_logprobs(versions[v], seqs))
        other = _gap(ros, _hf_logprobs(versions[it], seqs))
        assert own < 1e-3, (it, v, own)                   # sampled by the weights of its stamped version
        assert other > 10 * max(own, 1e-4), (it, own, other)   # ... and visibly not by the learner's newer ones


def test_async_with_zero_staleness_is_the_sync_run(tiny_model_path, tmp_path):
    from safetensors.torch import load_file

    from ascl_ray.cli import compose
    from ascl_ray.driver import train

    runs = {}
    for mode in ("sync", "async"):
        out = tmp_path / mode
        s = train(compose([f"model.path={tiny_model_path}", f"trainer.out_dir={out}", "trainer.iterations=2",
                           f"trainer.mode={mode}", "trainer.max_staleness=0", "rollout.seed_per_request=true",
                           *SMALL]))
        runs[mode] = (s["history"], load_file(str(out / "final" / "model.safetensors")))
    (h_sync, w_sync), (h_async, w_async) = runs["sync"], runs["async"]
    assert [h["reward/mean"] for h in h_sync] == [h["reward/mean"] for h in h_async]
    assert all(h["overlap/staleness"] == 0.0 and h["overlap/synced"] == 1.0 for h in h_sync + h_async)
    assert set(w_sync) == set(w_async)
    worst = max(float((w_sync[k] - w_async[k]).abs().max()) for k in w_sync)
    assert worst < 1e-6, worst
