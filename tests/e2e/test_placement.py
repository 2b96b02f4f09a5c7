"""Placement on a simulated multi-node Ray cluster (ray.cluster_utils.Cluster, nodes with custom resources):
every actor group lands where its config pins it, the DeepSpeed rendezvous endpoint comes from rank 0's node
(not the driver's), a real training iteration runs across the nodes, and a plan the cluster cannot hold is a
clear error naming the group and the resource, not a hang."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def nodes():
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    named = {"learner": cluster.add_node(num_cpus=2, resources={"learner_node": 2}),
             "rollout": cluster.add_node(num_cpus=1, resources={"rollout_node": 1}),
             "reward": cluster.add_node(num_cpus=1, resources={"reward_node": 1})}
    ray.init(address=cluster.address)
    cluster.wait_for_nodes()
    try:
        yield cluster, named
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_learner_bundles_pinned_and_rendezvous_on_rank0_node(nodes):
    import ray
    from ray.util.placement_group import placement_group_table

    from ascl_ray import placement
    from ascl_ray.config import LearnerCfg

    _, named = nodes
    learner_node = named["learner"]
    assert ray.get_runtime_context().get_node_id() != learner_node.node_id
    pg = placement.place(placement.learner_plan(LearnerCfg(num_actors=2, num_cpus_per_actor=0.5,
                                                           resources={"learner_node": 1})), timeout_s=60)
    try:
        addr, port, rank0_node = placement.endpoint_in_bundle(pg, 0)
        table = placement_group_table(pg)
        assert set(table["bundles_to_node_id"].values()) == {learner_node.node_id}   # pinned, packed
        assert rank0_node == table["bundles_to_node_id"][0] == learner_node.node_id  # probed on rank 0's node
        assert addr == learner_node.node_ip_address and 1024 < port < 65536
    finally:
        placement.remove(pg)


def test_a_plan_the_cluster_cannot_hold_names_the_resource(nodes):
    from ascl_ray import placement
    from ascl_ray.config import LearnerCfg, RolloutCfg
    from ascl_ray.reward.pool import RewardPool

    with pytest.raises(placement.PlacementError, match=r"learner placement: 3 bundles of \{'CPU': 0.5, 'learner_node': "
                                                       r"1.0\}.*could not be placed within 3s"):
        placement.place(placement.learner_plan(LearnerCfg(num_actors=3, num_cpus_per_actor=0.5,
                                                          resources={"learner_node": 1})), timeout_s=3)
    with pytest.raises(placement.PlacementError, match=r"rollout placement: 2 bundles of \{'CPU': 0.5, 'rollout_node'"):
        placement.place(placement.rollout_plan(RolloutCfg(num_workers=2, num_cpus_per_worker=0.5,
                                                          resources={"rollout_node": 1})), timeout_s=3)
    with pytest.raises(placement.PlacementError, match=r"reward placement: 2 bundles of \{'CPU': 0.25, 'reward_node'"):
        RewardPool({"num_workers": 2, "num_cpus_per_worker": 0.25, "resources": {"reward_node": 1}},
                   placement_timeout_s=3)


def test_a_training_iteration_with_every_group_on_its_own_node(nodes, tiny_model_path, tmp_path):
    """Learners (2 ZeRO-3 ranks), the vLLM engine and the reward actor each pinned to their node by config;
    one real iteration (rollout with the tool turn, reward, update, verified weight sync across nodes)."""
    import ray

    from ascl_ray.cli import compose
    from ascl_ray.driver import Trainer

    _, named = nodes
    cfg = compose([f"model.path={tiny_model_path}", f"trainer.out_dir={tmp_path / 'run'}", "trainer.iterations=1",
                   "data.prompts_per_iter=4", "rollout.n_samples=4", "tracking.progress=false",
                   "tracking.wandb_mode=disabled", "learner.num_cpus_per_actor=0.5",
                   "learner.resources={learner_node: 1}", "rollout.num_cpus_per_worker=0.5",
                   "rollout.resources={rollout_node: 1}", "reward.num_workers=1", "reward.resources={reward_node: 1}",
                   "cluster.placement_timeout_s=60"])
    tr = Trainer(cfg)
    try:
        tr.setup()
        assert ray.is_initialized()
        assert set(tr.learners.node_ids()) == {named["learner"].node_id}
        assert tr.learners.rank0_node == named["learner"].node_id
        assert tr.rollout.node_ids() == [named["rollout"].node_id]
        assert tr.pool.node_ids() == [named["reward"].node_id]
        m = tr.step(0)
        assert m["reward/invalid"] == 0.0 and m["sync/max_logprob_diff"] < cfg.trainer.sync_tol
    finally:
        tr.close()
    # every group's bundles go back to the cluster (placement-group removal is asynchronous)
    import time

    want = {"learner_node": 2.0, "rollout_node": 1.0, "reward_node": 1.0}
    for _ in range(60):
        free = ray.available_resources()
        if all(free.get(k) == v for k, v in want.items()):
            break
        time.sleep(0.5)
    assert {k: free.get(k) for k in want} == want
