"""The placement plan (pure, no Ray): bundles per actor group from the typed config, the cluster-shape
check a dry run uses, and config errors for tensor-parallel engines."""

from __future__ import annotations

import pytest

from ascl_ray.config import ConfigError, load_config
from ascl_ray.placement import PlacementError, check_fits, describe, parse_shape, plan_actors


def _cfg(**over):
    base = {"learner": {}, "rollout": {}, "reward": {}}
    for k, v in over.items():
        group, key = k.split("__")
        base[group][key] = v
    if base["rollout"].get("tensor_parallel_size", 1) > 1:   # TP engines sync through the object store
        base["trainer"] = {"sync_channel": "object_store"}
    return load_config(base)


def test_plan_reads_every_group_from_config():
    cfg = _cfg(learner__num_actors=4, learner__num_gpus_per_actor=1, learner__resources={"learner_node": 1},
               rollout__num_workers=2, rollout__num_gpus_per_worker=2, rollout__tensor_parallel_size=2,
               reward__num_workers=3, reward__num_cpus_per_worker=0.5, reward__resources={"cpu_node": 1})
    learner, rollout, reward = plan_actors(cfg)
    assert (learner.role, learner.count) == ("learner", 4)
    assert learner.bundle == {"CPU": cfg.learner.num_cpus_per_actor, "GPU": 1.0, "learner_node": 1.0}
    assert rollout.count == 2 and rollout.bundle["GPU"] == 2.0 and "TP 2" in rollout.what
    assert reward.bundle == {"CPU": 0.5, "cpu_node": 1.0} and reward.count == 3
    assert [p.role for p in plan_actors(cfg, learners=False, reward=False)] == ["rollout"]
    text = describe(plan_actors(cfg))
    assert "learner  4 x ZeRO-3 rank" in text and "GPU=4" in text


def test_default_cpu_plan_fits_two_cores_and_not_one():
    from ascl_ray.cli import compose

    cfg = compose([])          # the shipped defaults (conf/): CPU presets
    where = check_fits(plan_actors(cfg), parse_shape("1x0:2"))
    assert [len(w) for w in where] == [cfg.learner.num_actors, cfg.rollout.num_workers, cfg.reward.num_workers]
    with pytest.raises(PlacementError, match=r"needs 1.75 CPU \(learner 0.5, rollout 1, reward 0.25\) but the "
                                             r"cluster has 1 CPU"):
        check_fits(plan_actors(cfg), parse_shape("1x0:1"))


def test_gpu_shapes_name_the_short_resource_and_the_keys():
    cfg = _cfg(learner__num_actors=8, learner__num_gpus_per_actor=1, learner__num_cpus_per_actor=1,
               rollout__num_workers=2, rollout__num_gpus_per_worker=4, rollout__tensor_parallel_size=4)
    where = check_fits(plan_actors(cfg, reward=False), parse_shape("2x8"))
    assert sorted(set(where[0])) in ([0], [1]) and len(set(where[1])) == 1   # learners packed; engines share a node
    with pytest.raises(PlacementError, match=r"needs 16 GPU \(learner 8, rollout 8\) but the cluster has 8 GPU"
                                             r".*lower learner.num_actors or learner.num_gpus_per_actor"):
        check_fits(plan_actors(cfg, reward=False), parse_shape("1x8"))
    big = _cfg(rollout__num_gpus_per_worker=16, rollout__tensor_parallel_size=16)
    with pytest.raises(PlacementError, match=r"rollout: one vLLM engine \(TP 16\) needs 16 GPU on one node.*"
                                             r"largest node has 8 GPU"):
        check_fits(plan_actors(big, learners=False, reward=False), parse_shape("4x8"))
    # 16 GPUs are enough in total, but a third TP-5 engine cannot be split over the 3-GPU holes of two nodes
    frag = _cfg(learner__num_actors=1, learner__num_gpus_per_actor=1, rollout__num_workers=3,
                rollout__num_gpus_per_worker=5, rollout__tensor_parallel_size=5)
    with pytest.raises(PlacementError, match=r"rollout: vLLM engine \(TP 5\) 3 of 3 .*fits on no node.*short of GPU"):
        check_fits(plan_actors(frag, reward=False), parse_shape("2x8"))


def test_custom_resource_missing_from_cluster_is_named():
    cfg = _cfg(learner__resources={"learner_node": 1})
    with pytest.raises(PlacementError, match=r"needs 2 learner_node \(learner 2\) but the cluster has 0 learner_node"):
        check_fits(plan_actors(cfg), parse_shape("1x0:8"))


def test_parse_shape():
    assert parse_shape("2x8") == [{"GPU": 8.0, "CPU": float("inf")}] * 2
    assert parse_shape("1x0:16+1x4:32") == [{"GPU": 0.0, "CPU": 16.0}, {"GPU": 4.0, "CPU": 32.0}]
    with pytest.raises(ValueError, match="cluster shape 'eight'"):
        parse_shape("eight")


def test_tensor_parallel_needs_one_gpu_per_rank():
    with pytest.raises(ConfigError, match=r"rollout.num_gpus_per_worker: an engine with rollout.tensor_parallel_size=2 "
                                          r"needs one GPU per TP rank"):
        _cfg(rollout__tensor_parallel_size=2, rollout__num_gpus_per_worker=1)
    with pytest.raises(ConfigError, match=r"rollout.tensor_parallel_size: must be >= 1"):
        _cfg(rollout__tensor_parallel_size=0)
    with pytest.raises(ConfigError, match=r"reward.resources: amounts must be > 0"):
        _cfg(reward__resources={"cpu_node": 0})


def test_old_placement_timeout_key_names_its_new_home():
    with pytest.raises(ConfigError, match=r"learner.placement_timeout_s: renamed to cluster.placement_timeout_s"):
        load_config({"learner": {"placement_timeout_s": 5}})
    with pytest.raises(ConfigError, match=r"cluster.placement_timeout_s: must be > 0"):
        load_config({"cluster": {"placement_timeout_s": 0}})
