"""``resources.placement`` reaches Ray Train: the spec's option, through the plan's trial
settings, to the ScalingConfig's placement strategy (a STRICT_PACK group is one node)."""
from __future__ import annotations

from pathlib import Path

import pytest
from ray.train import ScalingConfig

from sweep.plan import build_plan
from sweep.spec import SpecError, parse_spec
from trainables.distributed import placement_strategy


def _spec(**resources):
    return parse_spec({"name": "p", "model": "tiny", "intermediate": ["none"],
                       "targets": [{"task": "toy_xnli", "languages": ["en"]}],
                       "resources": {"cpu": 1, "gpu": 1, "workers": 8, **resources}})


@pytest.mark.parametrize("given, ray_name", [({}, "PACK"), ({"placement": "strict_pack"}, "STRICT_PACK"),
                                             ({"placement": "spread"}, "SPREAD")])
def test_spec_placement_becomes_ray_trains_strategy(given, ray_name):
    job = build_plan(_spec(**given)).jobs[0]
    config = {"settings": job.settings}  # what a trial's config carries (TrialConfig.settings)
    assert placement_strategy(config) == ray_name
    scaling = ScalingConfig(num_workers=8, use_gpu=True, resources_per_worker={"CPU": 1, "GPU": 1},
                            placement_strategy=placement_strategy(config))
    assert scaling.placement_strategy == ray_name
    assert scaling.as_placement_group_factory().strategy == ray_name


def test_an_unknown_placement_is_a_spec_error():
    with pytest.raises(SpecError, match="resources.placement"):
        _spec(placement="packed")


def _where_trial(config: dict, ctx) -> dict:
    """A rank says which Ray node it runs on."""
    import json
    from pathlib import Path

    import ray

    Path(config["out"], f"rank{ctx.rank}.json").write_text(json.dumps({"node": ray.get_runtime_context().get_node_id()}))
    return {"rank": ctx.rank}


@pytest.mark.slow
def test_strict_pack_puts_a_trials_workers_on_one_node_and_spread_does_not(tmp_path):
    """Two 2-CPU worker nodes (real raylets, Ray's cluster_utils), a 2-worker trial of 1 CPU each:
    strict_pack -> one node; spread -> one worker per node."""
    import json

    import ray
    from ray.cluster_utils import Cluster

    from trainables.distributed import run_distributed

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    nodes = [cluster.add_node(num_cpus=2) for _ in range(2)]
    try:
        root = Path(__file__).resolve().parents[1]  # workers import this test module by name
        ray.init(address=cluster.address, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": f"{root / 'tests'}:{root}"}})
        cluster.wait_for_nodes()
        seen = {}
        for placement in ("strict_pack", "spread"):
            out = tmp_path / placement
            out.mkdir()
            run_distributed(_where_trial, {"out": str(out), "settings": {"resources": {"placement": placement}}},
                            num_workers=2, use_gpu=False, resources_per_worker={"CPU": 1},
                            storage_path=str(tmp_path / "train"), timeout_s=120)
            seen[placement] = {json.loads((out / f"rank{r}.json").read_text())["node"] for r in (0, 1)}
        worker_ids = {n.node_id for n in nodes}
        assert len(seen["strict_pack"]) == 1 and seen["strict_pack"] <= worker_ids, seen
        assert seen["spread"] == worker_ids, seen
    finally:
        ray.shutdown()
        cluster.shutdown()
