"""The dense P/D validation cases (fleetsim/validation/cases/disaggregated_dense.yaml) build as the
published MLPerf v5.1 topology. Checks of the case data against the submission and the data set,
not of a simulated figure (`fleetsim validate` reports those)."""

import json
from statistics import mean

import pytest

from fleetsim.validation import load_cases, shipped_case_files
from fleetsim.validation.runner import build_case, scenario_data


def test_the_dense_pd_cases_build_as_the_published_topology():
    path = next(f for f in shipped_case_files() if f.name == "disaggregated_dense.yaml")
    cases = load_cases(path)
    assert {c.group for c in cases} == {"disaggregated"}
    assert {c.split for c in cases} == {"holdout"}
    # One scenario and one rate search behind every case: they share one simulation job.
    assert len({json.dumps(c.overrides, sort_keys=True) for c in cases}) == 1
    assert {tuple(sorted(c.max_rate_within.items())) for c in cases} == {(("tpot_p99_s", 0.08), ("ttft_p99_s", 4.5))}
    data, base = scenario_data(cases[0], path.parent)
    spec = build_case(data, base, "dense P/D case")  # the memory plan holds both pools
    d = spec.disaggregation
    assert d is not None
    # run_disagg_405B/README.md: 14 context servers of TP4 and 2 generation servers of TP8, 72 GPUs.
    assert (d.prefill.replicas, d.prefill.tp, d.decode.replicas, d.decode.tp) == (14, 4, 2, 8)
    assert d.prefill.replicas * d.prefill.tp + d.decode.replicas * d.decode.tp == 72
    assert (d.ttft_at, d.layer_pipelined) == ("handoff", False)
    # The 8,313-sample set's means (performance-dashboard llama3-1-405b.csv): 9,428.6 and 684.7 tokens.
    cls = spec.workload.classes[0]
    assert mean(cls.input_tokens.values) == pytest.approx(9428.6, rel=0.005)
    assert mean(cls.output_tokens.values) == pytest.approx(684.7, rel=0.005)
