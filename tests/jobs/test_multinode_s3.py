"""Two Ray nodes (ray.cluster_utils.Cluster), the dataset in a real S3 endpoint on loopback (moto server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from classemo.config import load_config
from classemo.synth.clips import write_synth_dataset
from helpers import SMOKE

pytestmark = [pytest.mark.ray, pytest.mark.s3, pytest.mark.slow]


@pytest.fixture(scope="module")
def two_nodes(s3_endpoint):
    """Head + 1 worker node, 3 CPUs each, all on 127.0.0.1. Started after the S3 env is set, so every node's
    processes see it."""
    import ray
    import ray._private.ray_constants as ray_constants
    from ray.cluster_utils import Cluster

    from helpers import free_port

    def ports() -> dict:
        return {"dashboard_agent_listen_port": free_port(), "metrics_export_port": free_port()}

    with pytest.MonkeyPatch.context() as mp:
        # ray.init(address="127.0.0.1:port") rewrites a loopback host to the machine's outward address ("remotely
        # reachable"), where these loopback-only nodes never listen. That rewrite is skipped when Ray believes
        # multi-node clusters are off; only the `ray start` CLI reads this flag otherwise, and the nodes here are
        # started in-process.
        mp.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
        mp.setenv(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR, "0")
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 3, "node_ip_address": "127.0.0.1",
                                                                "include_dashboard": False, **ports()})
        cluster.add_node(num_cpus=3, node_ip_address="127.0.0.1", **ports())
        ray.init(address=cluster.address, _node_ip_address="127.0.0.1", log_to_driver=False,
                 configure_logging=False)
        cluster.wait_for_nodes()
        yield cluster
        ray.shutdown()
        cluster.shutdown()


def test_two_workers_on_two_nodes_read_the_dataset_from_s3(two_nodes, s3_bucket: str, tmp_path: Path) -> None:
    from classemo.data.dataset import inspect_dataset
    from jobs.train import resolve_paths, run_training

    root = f"s3://{s3_bucket}/tiny"
    write_synth_dataset(root, clips_per_class=4, num_frames=4, image_size=32, seed=1, subjects=12)
    # 2 CPUs per worker on 3-CPU nodes: the two workers cannot share a node, and each node keeps 1 CPU for Ray Data.
    cfg = resolve_paths(load_config(SMOKE, [f"data.root={root}", "stargan.enabled=false", "unified.epochs=1",
                                            "scaling.cpus_per_worker=2", f"run.storage_path={tmp_path / 'runs'}"]))
    stage = run_training(cfg, inspect_dataset(root))
    assert stage.history[-1]["num_nodes"] == 2
    assert stage.history[-1]["val_num_samples"] == inspect_dataset(root).manifest.counts["val"]
    assert (Path(stage.checkpoint_dir) / "model" / "model.pt").is_file()
