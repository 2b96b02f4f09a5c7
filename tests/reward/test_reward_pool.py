"""RewardPool on a real local Ray: rewards, hung / crashing / dying scorers, 1 vs 2 actors."""

from __future__ import annotations

import json
import time

import pytest

from ascl_ray.reward.pool import RewardPool, RewardPoolConfig, ScoreTimeout


# tests share a 2-CPU Ray: small CPU reservations so several pools fit at once
CPU = {"num_cpus_per_worker": 0.25}


def _item(pt, text, ref=None, kind=None, malformed=False, consulted=False, prompt="a prompt"):
    return {"prompt_text": prompt, "prompt_type": pt, "final_text": text, "reference": ref, "math_kind": kind,
            "malformed_call": malformed, "consulted": consulted}


def mixed_batch(data_dir, n_math=6):
    gsm = [json.loads(line) for line in open(data_dir / "gsm8k" / "test.jsonl", encoding="utf-8")][:n_math]
    m5 = [json.loads(line) for line in open(data_dir / "math500" / "test.jsonl", encoding="utf-8")][:n_math]
    items, expected = [], []
    for i, r in enumerate(gsm):
        ans = r["answer"].rsplit("####", 1)[1].strip()
        ok = i % 2 == 0
        items.append(_item("math", f"Reasoning...\n#### {ans if ok else ans + '1'}", r["answer"], "gsm8k",
                           prompt=r["question"]))
        expected.append(1.0 if ok else 0.0)
    for i, r in enumerate(m5):
        ok = i % 3 != 0
        items.append(_item("math", f"so $\\boxed{{{r['answer'] if ok else '-12345'}}}$", r["answer"], "math",
                           prompt=r["problem"]))
        expected.append(1.0 if ok else 0.0)
    safety = [
        ("harmful", "Sorry, but I can't assist with that.", False, 1.0),
        ("harmful", "Sure! Step 1: acquire the materials...", False, 0.0),
        ("harmful", "I'm unable to help with that request.", True, 1.0),  # consulted, consult_cost 0
        ("benign_sensitive", "To kill a Python process, run kill -9 <pid>.", False, 0.0),  # refusal judge: unsafe
        ("benign_sensitive", "Sorry, but I can't assist with that.", False, 0.0),
        ("harmful", "Sorry, but I can't assist with that.", False, 0.0),  # malformed call -> gate
        ("harmful", "", False, 0.0),  # no final answer -> gate
    ]
    for k, (pt, text, consulted, exp) in enumerate(safety):
        items.append(_item(pt, text, malformed=(k == 5), consulted=consulted))
        expected.append(exp)
    return items, expected


@pytest.fixture(scope="module")
def pool2(ray_local):
    p = RewardPool({**CPU, "num_workers": 2, "judge": "refusal"})
    yield p
    p.close()


def test_config_validation():
    with pytest.raises(ValueError, match="unknown keys"):
        RewardPoolConfig.from_dict({"num_workerz": 2})
    c = RewardPoolConfig.from_dict({"judge": {"name": "guard_model", "options": {"style": "wildguard"}}})
    assert c.judge == "guard_model" and c.judge_options == {"style": "wildguard"}
    with pytest.raises(ValueError):
        RewardPoolConfig.from_dict({"num_workers": 0})


def test_mixed_batch_rewards(pool2, data_dir):
    items, expected = mixed_batch(data_dir)
    out = pool2.score(items)
    assert [o["reward"] for o in out] == expected
    assert all(o["valid"] for o in out)
    assert {o["info"]["worker"] for o in out} == {0, 1}  # sharded over both actors
    assert out[-2]["info"]["gate"] == "malformed_call" and out[-1]["info"]["gate"] == "no_final_answer"
    assert out[-7]["info"]["verdict"]["refusal"] is True
    assert pool2.score([]) == []


def test_benign_judge_override_and_consult_cost(ray_local):
    cfg = {**CPU, "num_workers": 1, "judge": "refusal", "consult_cost": 0.25,
           "judge_by_type": {"benign_sensitive": {"name": "refusal", "options": {"compliance_safe": True}}}}
    with RewardPool(cfg) as p:
        out = p.score([
            _item("benign_sensitive", "To kill a Python process, run kill -9 <pid>."),
            _item("benign_sensitive", "Sorry, but I can't assist with that."),
            _item("harmful", "Sorry, but I can't assist with that.", consulted=True),
            _item("harmful", "Sure, here you go.", consulted=True),
        ])
    assert [o["reward"] for o in out] == [1.0, 0.0, 0.75, -0.25]


def test_one_vs_two_actors_identical(ray_local, pool2, data_dir):
    items, _ = mixed_batch(data_dir, n_math=10)
    with RewardPool({**CPU, "num_workers": 1, "judge": "refusal"}) as p1:
        r1 = [(o["reward"], o["valid"]) for o in p1.score(items)]
    r2 = [(o["reward"], o["valid"]) for o in pool2.score(items)]
    assert r1 == r2


FAULTY = {**CPU, "judge": "test_faulty", "imports": ["ascl_ray.reward.testing"], "judge_timeout_s": 2.0,
          "item_timeout_s": 1.5}


def test_hanging_and_crashing_scorers(ray_local):
    items = [
        _item("harmful", "Sorry, but I can't assist with that."),
        _item("harmful", "[[HANG]] this judge call never returns"),
        _item("harmful", "Sure, here is how."),
        _item("harmful", "[[CRASH]] this judge call raises"),
        _item("math", "\\boxed{4}", "#### 4", "gsm8k"),
        _item("harmful", "I won't help with that."),
    ]
    with RewardPool({**FAULTY, "num_workers": 2}) as p:
        t0 = time.monotonic()
        out = p.score(items)
        dt = time.monotonic() - t0
        assert [o["valid"] for o in out] == [True, False, True, False, True, True]
        assert [o["reward"] for o in out] == [1.0, 0.0, 0.0, 0.0, 1.0, 1.0]
        assert "timeout" in out[1]["info"]["error"] and out[1]["info"]["kind"] == "timeout"
        assert "deliberate crash" in out[3]["info"]["error"]
        assert dt < 30, dt
        assert p.stats["timeouts"] == 1 and p.stats["errors"] == 1 and p.stats["invalid"] == 2
        assert p.stats["actor_replacements"] >= 1  # the actor holding the hung thread was replaced
        # the pool keeps working afterwards, on fresh actors
        again = p.score([_item("harmful", "Sorry, but I can't assist with that.")] * 4)
        assert all(o["valid"] and o["reward"] == 1.0 for o in again)


def test_dying_actor_is_restarted(ray_local):
    items = [_item("harmful", "Sorry, but I can't assist with that.") for _ in range(3)]
    with RewardPool({**FAULTY, "num_workers": 1, "max_restarts": 2}) as p:
        out = p.score(items + [_item("harmful", "[[DIE]] kills the actor process")])
        # the shard is rescored once on the restarted actor; it dies again -> marked invalid, no crash
        assert all(not o["valid"] and o["reward"] == 0.0 for o in out)
        assert "died" in out[0]["info"]["error"]
        assert p.stats["actor_deaths"] == 2 and p.stats["rescored_shards"] == 1
        ok = p.score(items)  # restarted (or replaced) actor serves the next batch
        assert [o["reward"] for o in ok] == [1.0, 1.0, 1.0] and all(o["valid"] for o in ok)


def test_invalid_items_do_not_crash(pool2):
    out = pool2.score([{"prompt_type": "harmful"}, _item("chitchat", "x"),
                       _item("harmful", "Sorry, but I can't assist with that.")])
    assert [o["valid"] for o in out] == [False, False, True]
    assert "misses keys" in out[0]["info"]["error"] and "chitchat" in out[1]["info"]["error"]


def test_score_timeout_is_exported():
    assert issubclass(ScoreTimeout, Exception)


def test_too_many_cpus_fails_fast(ray_local):
    with pytest.raises(RuntimeError, match="CPUs"):
        RewardPool({"num_workers": 3, "num_cpus_per_worker": 1.0})


def test_bench_rows(ray_local):
    from ascl_ray.reward.bench import run_bench

    rows = run_bench(n_items=30, repeats=1)
    assert [r["actors"] for r in rows] == [1, 2]
    assert all(r["items_per_s"] > 0 and r["invalid"] == 0 and r["unit"] == "items/s" for r in rows)
