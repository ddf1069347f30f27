"""``resources.placement`` reaches Ray Train: the spec's option, through the plan's trial
settings, to the ScalingConfig's placement strategy (a STRICT_PACK group is one node)."""
from __future__ import annotations

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
