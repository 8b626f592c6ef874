"""The second dense P/D validation set (fleetsim/validation/cases/disaggregated_dense2.yaml) builds
as the published Dynamo deployment. Checks of the case data against the source's manifest and
genai-perf command, not of a simulated figure (`fleetsim validate` reports those)."""

import json

from fleetsim.validation import load_cases, shipped_case_files
from fleetsim.validation.runner import build_case, scenario_data


def _cases():
    path = next(f for f in shipped_case_files() if f.name == "disaggregated_dense2.yaml")
    return path, load_cases(path)


def test_the_dynamo_b200_cases_build_as_the_published_deployment():
    path, cases = _cases()
    assert {c.group for c in cases} == {"disaggregated"}
    assert {c.split for c in cases} == {"holdout"}
    # Two closed-loop points (16 and 32 genai-perf clients), one simulation job each.
    assert len({json.dumps(c.overrides, sort_keys=True) for c in cases}) == 2
    users = set()
    for case in cases:
        data, base = scenario_data(case, path.parent)
        spec = build_case(data, base, "Dynamo B200 P/D case")  # the memory plan holds both pools
        d = spec.disaggregation
        assert d is not None
        # workato_3xtp4p_1xtp4d_2nodes.yaml: VllmPrefillWorker 3 x TP4, VllmDecodeWorker 1 x TP4, 16 B200.
        assert (d.prefill.gpu, d.decode.gpu) == ("b200", "b200")
        assert (d.prefill.replicas, d.prefill.tp, d.decode.replicas, d.decode.tp) == (3, 4, 1, 4)
        assert d.prefill.replicas * d.prefill.tp + d.decode.replicas * d.decode.tp == 16
        assert (d.ttft_at, d.layer_pipelined, d.link.name) == ("handoff", False, "roce-400g")
        # --kv-cache-dtype fp8 on an FP8 checkpoint; --max-num-batched-tokens / --max-model-len 32768.
        assert spec.weight_dtype == "fp8" and spec.kv_cache.key_dtype == "fp8"
        assert spec.scheduler.max_batched_tokens == 32768 and spec.scheduler.max_model_len == 32768
        # genai-perf: 26,000 prompt tokens (stddev 0); max_tokens 1000 with ignore_eos.
        cls = spec.workload.classes[0]
        assert (cls.input_tokens.tokens, cls.output_tokens.tokens) == (26000, 1000)
        assert spec.workload.arrival.kind == "closed"
        users.add(spec.workload.arrival.users)
    assert users == {16, 32}


def test_each_point_reports_throughput_ttft_and_tpot_from_the_source():
    _, cases = _cases()
    metrics = {(c.overrides["workload.arrival"]["users"], c.metric) for c in cases}
    assert metrics == {(u, m) for u in (16, 32) for m in ("output_tokens_per_s", "ttft_s", "tpot_s")}
    assert all(c.source.entry and c.source.reference and c.status == "ok" for c in cases)
