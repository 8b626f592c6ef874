"""Feature combinations fleetsim does not model are refused in one line (exit 2 on the CLI), never run
with a wrong answer: found by a review of the merged topology and fleet-dynamics features."""

from pathlib import Path

import pytest

import fleetsim
from fleetsim.errors import SpecError
from fleetsim.plan import plan_fleet

ROOT = Path(__file__).resolve().parents[1]
PD = ROOT / "scenarios" / "h100_llama3_70b_pd.yaml"
LLAMA = ROOT / "scenarios" / "h100_llama3.yaml"
MULTITURN = ROOT / "scenarios" / "h100_llama3_multiturn_offload.yaml"


def _one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_plan_without_pd_refuses_a_disaggregated_scenario():
    # It used to size "1 x h100-sxm at tp=1" while simulating the scenario's own 14-GPU pools.
    with pytest.raises(SpecError) as err:
        plan_fleet(PD, ["h100-sxm"], overrides={"run.duration_s": 5})
    assert "--pd" in _one_line(err)


def test_pipeline_stages_in_disaggregated_pools_are_refused():
    # Stages were simulated but their GPUs neither counted nor priced.
    with pytest.raises(SpecError) as err:
        fleetsim.load_scenario(PD, {"fleet.pipeline": {"stages": 2}})
    assert "fleet.pipeline.stages" in _one_line(err)


def test_mtp_needs_a_model_with_an_mtp_head():
    # Llama 3 has no MTP head (no num_nextn_predict_layers in its config.json); DeepSeek-V3 has one.
    with pytest.raises(SpecError) as err:
        fleetsim.simulate(LLAMA, {"run.duration_s": 2, "speculative": {"method": "mtp", "draft_tokens": 1}})
    assert "MTP head" in _one_line(err)
    from fleetsim.replica_model import mtp_head_layers

    assert mtp_head_layers("deepseek-v3") == 1 and mtp_head_layers("llama-3-8b") == 0


def test_routing_kind_other_than_the_router_is_refused():
    # fleet.router picks the router; fleet.routing.kind was silently ignored.
    with pytest.raises(SpecError) as err:
        fleetsim.load_scenario(MULTITURN, {"fleet.routing.kind": "least_outstanding"})
    assert "fleet.routing.kind" in _one_line(err)


def test_a_model_level_error_has_no_empty_location():
    with pytest.raises(SpecError) as err:
        fleetsim.load_scenario(PD, {"fleet.pipeline": {"stages": 2}})
    assert ": :" not in str(err.value)
