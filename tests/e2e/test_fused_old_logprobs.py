"""One optimizer step per iteration (learner.epochs=1, learner.num_mini_batches=1): skipping the separate
old-log-prob forward (``learner.skip_old_logprob_forward``) changes no value. Real DeepSpeed ZeRO-3 over gloo
(2 ranks, the tiny model): the same rollouts, the same starting state (restored from a full checkpoint),
updated once each way; the weights after the step, the loss and the mismatch metrics agree."""

from __future__ import annotations

import random

import pytest

pytestmark = pytest.mark.slow


def _weights(learners):
    import ray
    from safetensors.torch import load

    ref, _ = learners.export_weights_ref()
    return load(ray.get(ref))


def _rollouts(tok, learners, n=16, seed=0):
    """Episodes of the tiny model's vocabulary with sampling log-probs = the learner's + noise (a mismatch the
    truncated IS sees), half of each response loss-masked as a tool turn would be."""
    from ascl_ray.batch import PromptRow, Rollout

    rnd = random.Random(seed)
    vocab = len(tok)
    seqs = []
    for i in range(n):
        p = [rnd.randrange(3, vocab) for _ in range(rnd.randint(6, 12))]
        r = [rnd.randrange(3, vocab) for _ in range(rnd.randint(8, 20))]
        seqs.append((p, r))
    lps = learners.probe_logprobs([p + r for p, r in seqs])
    out = []
    for i, ((p, r), lp) in enumerate(zip(seqs, lps)):
        mask = [1] * len(r)
        for j in range(len(r) // 3, len(r) // 2):
            mask[j] = 0
        resp_lp = [(x + rnd.gauss(0, 0.05)) * m for x, m in zip(lp[len(p) - 1:], mask)]
        ro = Rollout(group_id=i // 4, prompt=PromptRow(prompt_id=f"t{i}", text=f"p{i}", prompt_type="math", reference="1", math_kind="gsm8k"),
                     prompt_ids=p, response_ids=r, loss_mask=mask, rollout_logprobs=resp_lp)
        ro.advantage = rnd.choice([-1.0, 1.0]) * rnd.uniform(0.2, 1.0)
        out.append(ro)
    return out


def test_skipping_the_old_logprob_forward_changes_no_value(tiny_model_path, tiny_tokenizer, tmp_path):
    import ray

    from ascl_ray.cli import compose
    from ascl_ray.runtime import build_stack

    cfg = compose([f"model.path={tiny_model_path}", "learner.epochs=1", "learner.num_mini_batches=1",
                   "data.prompts_per_iter=4", "rollout.n_samples=4", "learner.micro_batch_size=4"])
    ray.init(num_cpus=2, include_dashboard=False, namespace="ascl-test-fused",
             runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1"}})
    stack = build_stack(cfg, tiny_model_path, rollout=False, reward=False, sync=False)
    try:
        L = stack.learners
        assert L.fused_old_logprobs and cfg.grad_accum == 2      # two micro-batches per rank: accumulation covered
        ros = _rollouts(tiny_tokenizer, L)
        L.save_checkpoint(str(tmp_path / "start"))
        m_sep = L.update(ros, fused=False)
        w_sep = _weights(L)
        L.load_checkpoint(str(tmp_path / "start"))
        m_fused = L.update(ros, fused=True)
        w_fused = _weights(L)
        L.load_checkpoint(str(tmp_path / "start"))
        w0 = _weights(L)
    finally:
        stack.close()
        ray.shutdown()
    assert m_sep["train/old_logprob_forward"] == 1.0 and m_fused["train/old_logprob_forward"] == 0.0
    moved = max(float((w_sep[k] - w0[k]).abs().max()) for k in w0)
    assert moved > 1e-5, "the step must move the weights, or the comparison below says nothing"
    # Adam's first step is lr * g / (|g| + eps): about +-lr for every element, whatever the gradient's size, so the
    # float noise of the two paths (different batch shapes and modes of the forward) only shows where a gradient
    # nearly cancels and its last bits decide the step. Measured on two CPUs: AVX-512 (the earlier bound, every
    # element within 1e-6) and AVX2 (657,792 elements: 16 differ by more than 1e-7, one by 2.2e-6 = 0.7 % of lr).
    # So: nearly every element within 1e-7 (the bulk 10x tighter than before), none off by 5 % of one step; a
    # real difference of the paths moves the gradient itself, which the grad-norm check below bounds at 1e-4.
    import torch

    d = torch.cat([(w_sep[k] - w_fused[k]).abs().flatten() for k in w0])
    n_off, worst = int((d > 1e-7).sum()), float(d.max())
    assert n_off <= 1e-4 * d.numel(), f"{n_off} of {d.numel()} weights differ by more than 1e-7 after the step"
    assert worst < 0.05 * cfg.learner.lr, f"weights after the step differ by {worst:g} (the step moved them by {moved:g})"
    for k in ("train/loss", "mismatch/abs_diff_mean", "mismatch/abs_diff_max", "mismatch/k3_kl", "train/grad_norm"):
        assert m_fused[k] == pytest.approx(m_sep[k], rel=1e-4, abs=1e-6), k
    assert m_sep["mismatch/abs_diff_mean"] > 0.01        # the IS correction had a mismatch to correct
