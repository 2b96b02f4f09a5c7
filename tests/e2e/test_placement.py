"""Learner placement on a simulated multi-node Ray cluster (ray.cluster_utils.Cluster): the bundles land
where the config pins them, the DeepSpeed rendezvous endpoint comes from rank 0's node (not the driver's),
and a plan the cluster cannot hold is a clear error naming the resource, not a hang."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_nodes():
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    learner_node = cluster.add_node(num_cpus=2, resources={"learner_node": 2})
    ray.init(address=cluster.address)
    cluster.wait_for_nodes()
    try:
        yield cluster, learner_node
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_learners_land_where_configured_and_rendezvous_on_rank0_node(two_nodes):
    import ray
    from ray.util.placement_group import placement_group_table, remove_placement_group

    from ascl_ray.learner.actor import learner_placement

    cluster, learner_node = two_nodes
    driver_node = ray.get_runtime_context().get_node_id()
    assert driver_node != learner_node.node_id
    pg, (addr, port, rank0_node) = learner_placement(2, 0.5, 0, {"learner_node": 1}, timeout_s=60)
    try:
        table = placement_group_table(pg)
        assert set(table["bundles_to_node_id"].values()) == {learner_node.node_id}   # pinned, packed
        assert rank0_node == table["bundles_to_node_id"][0] == learner_node.node_id  # probed on rank 0's node
        assert addr == learner_node.node_ip_address and 1024 < port < 65536
    finally:
        remove_placement_group(pg)


def test_a_plan_the_cluster_cannot_hold_names_the_resource(two_nodes):
    from ascl_ray.learner.actor import learner_placement

    with pytest.raises(RuntimeError, match=r"learner placement: 3 bundles of \{'CPU': 0.5, 'learner_node': 1\}.*"
                                           r"could not be placed within 5s"):
        learner_placement(3, 0.5, 0, {"learner_node": 1}, timeout_s=5)
