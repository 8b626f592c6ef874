"""The step model's physics, each against a hand calculation or a cited figure (issue 10)."""

import pytest

from fleetsim.catalog import load_gpu, load_model
from fleetsim.memory import active_weight_bytes, kv_footprint, weight_bytes
from fleetsim.perf import StepModel, attention_flops_per_context_token, gemm_plan
from fleetsim.profile import load_engine_profile, load_profile
from fleetsim.spec.engine import EngineSpec
from fleetsim.spec.kvcache import KvCacheSpec
from fleetsim.spec.profile import AttentionEfficiency

LLAMA3_8B_TOTAL = 8_030_261_248  # Hugging Face safetensors total
LLAMA3_8B_TABLE = 128_256 * 4_096  # vocab x hidden: one token table (untied: embedding and LM head)


def step_model(model="llama-3-8b", gpu="h100-sxm", tp=1, weights="bf16", kv="bf16", engine=None, **changes):
    arch = load_model(model)
    spec = KvCacheSpec(key_dtype=kv, value_dtype=kv)
    eng = load_engine_profile(engine or EngineSpec())
    if changes:
        eng = eng.model_copy(update=changes)
    return StepModel(arch, load_gpu(gpu), load_profile(gpu), eng, tp, weights, spec, kv_footprint(arch, spec, tp))


def test_quantized_checkpoints_keep_embedding_and_lm_head_in_bf16():
    # Llama 3 8B in int4 (AWQ/GPTQ, 4.125 bits with group scales): the body at 4.125 bits, the two
    # 128,256 x 4,096 tables at 2 bytes, as the published AWQ/GPTQ/FP8 checkpoints store them.
    tables = 2 * LLAMA3_8B_TABLE
    body = LLAMA3_8B_TOTAL - tables
    expected = body * 4.125 / 8 + tables * 2
    assert weight_bytes(load_model("llama-3-8b"), "int4") == pytest.approx(expected, abs=1)
    # The old all-int4 count was 27% low: 8.03e9 x 4.125 / 8 = 4.14 GB against 5.70 GB.
    assert LLAMA3_8B_TOTAL * 4.125 / 8 / expected == pytest.approx(0.726, abs=0.002)


def test_the_token_embedding_is_a_lookup_not_a_gemm():
    arch = load_model("llama-3-8b")
    # Streamed per step: everything but the input embedding table (the LM head is read).
    assert active_weight_bytes(arch, "bf16", 1) == pytest.approx((LLAMA3_8B_TOTAL - LLAMA3_8B_TABLE) * 2)
    sm = step_model()
    # Active parameters exclude the lookup; the LM head multiplies only for tokens that sample.
    body = LLAMA3_8B_TOTAL - 2 * LLAMA3_8B_TABLE
    assert sm.linear_flops(100, 1) == pytest.approx(2 * body * 100 + 2 * LLAMA3_8B_TABLE * 1, rel=1e-3)


def test_mla_prefill_is_costed_non_absorbed_and_decode_absorbed():
    arch = load_model("deepseek-v3")  # 61 MLA layers, 128 heads, latent 512 + rope 64, nope 128, v 128
    decode = 61 * 2 * 128 * (2 * 512 + 64)
    prefill = 61 * 2 * 128 * (128 + 64 + 128)
    assert attention_flops_per_context_token(arch, "decode") == decode
    assert attention_flops_per_context_token(arch, "prefill") == prefill
    assert decode / prefill == pytest.approx(3.4)


def test_prefill_attention_runs_at_the_attention_dtype_peak_not_the_weights():
    # A 32k prompt, one chunk: attention FLOPs = 4 x q_heads x head_dim x layers per (query, key)
    # pair, n^2 / 2 pairs (causal); bf16 math whatever the weights are stored in.
    n = 32_768
    pairs = n * n / 2
    flops = 4 * 32 * 128 * 32 * pairs
    for weights in ("bf16", "fp8"):
        sm = step_model(weights=weights)
        pair_bytes = n * sm.footprint.bytes_per_rank(n / 2, 0)
        got = sm.breakdown(0, 0.0, n, pair_bytes, 1)["attention_prefill_s"]
        rate = sm.profile.attention.prefill_eta * sm.gpu.peak_flops("bf16") * sm.engine.attention_efficiency_scale
        assert got == pytest.approx(flops / rate, rel=1e-6)
    # An engine that runs fp8 attention on an fp8 KV cache (TensorRT-LLM FMHA) uses the fp8 peak.
    fast = step_model(kv="fp8", engine=EngineSpec(kind="trtllm", version="1.0"))
    assert fast.attention_dtype == "fp8"


def test_a_precision_the_gpu_cannot_compute_is_weight_only_and_says_so():
    a100, h100 = load_gpu("a100-80gb"), load_gpu("h100-sxm")
    plan = gemm_plan("fp8", a100)
    assert (plan.compute_dtype, plan.weight_only) == ("bf16", True)
    assert "a100-80gb has no fp8 tensor cores" in plan.note and "bf16" in plan.note
    assert gemm_plan("fp8", h100).compute_dtype == "fp8" and not gemm_plan("fp8", h100).weight_only
    assert gemm_plan("int4", h100).weight_only  # AWQ/GPTQ: W4A16 everywhere


def test_a_kv_dtype_without_a_fitted_efficiency_takes_the_nearest_fitted_one():
    att = AttentionEfficiency(prefill_eta=0.5, kv_read_efficiency={"fp8": 0.9})
    assert att.kv_efficiency("fp8") == (0.9, "fp8")
    assert att.kv_efficiency("q8_0") == (0.9, "fp8")  # 8.5 bits: nearest 8
    assert att.kv_efficiency("q4_0") == (0.9, "fp8")  # 4.5 bits: nearest of {8, 16}
    assert att.kv_efficiency("bf16") == (1.0, "bf16")  # the reference
    sm = step_model(kv="q8_0")
    assert (sm.kv_fit_key, sm.kv_fit_value) == ("fp8", "fp8")


def test_overhead_scales_with_layers_and_all_reduce_with_tp():
    sm = step_model("llama-3-70b", tp=4)  # 80 layers, hidden 8192
    launch = sm.engine.launch
    assert sm.layer_fixed_s == pytest.approx(80 * launch.per_layer_gpu_s)
    tokens = 64
    lat = sm.engine.allreduce_latency_s or sm.profile.collectives.allreduce_latency_s
    ring = 2 * (4 - 1) / 4 * 8192 * 2  # bytes per token through each GPU's link in a ring all-reduce
    expected = 2 * 80 * (lat + tokens * ring / sm.profile.collectives.allreduce_bus_bytes_per_s)
    assert sm.comm_time_s(tokens) == pytest.approx(expected)
    assert step_model("llama-3-70b", "h200", tp=1).comm_time_s(tokens) == 0.0


def test_all_reduce_runs_at_nccl_measured_nvlink_rates():
    # nccl-tests issue #290 (NCCL maintainer): ~476 GB/s bus bandwidth on 8x H100 with NVLS;
    # Azure ND H200 v5: 480 GB/s at 8 GB (calibration/research/conditions.yaml).
    assert load_profile("h100-sxm").collectives.allreduce_bus_bytes_per_s == pytest.approx(476e9, rel=0.02)
    assert load_profile("h200").collectives.allreduce_bus_bytes_per_s == pytest.approx(480e9, rel=0.01)


def test_host_time_hides_under_the_gpu_when_the_engine_overlaps_them():
    sm = step_model(
        host=load_engine_profile(EngineSpec()).host.model_copy(update={"overlap": True, "serial_fraction": 0.0})
    )
    gpu = 0.010
    host = sm.host_time_s(8)
    assert sm.iteration_time_s(gpu - sm.layer_fixed_s, 8, graph=False) == pytest.approx(max(gpu, host))
    serial = step_model(host=sm.engine.host.model_copy(update={"overlap": False}))
    assert serial.iteration_time_s(gpu - serial.layer_fixed_s, 8, graph=False) == pytest.approx(
        gpu + serial.host_time_s(8)
    )


def test_streaming_adds_its_host_time_per_sequence_only_when_responses_stream():
    eng = load_engine_profile(EngineSpec())
    eng = eng.model_copy(update={"host": eng.host.model_copy(update={"per_streamed_sequence_s": 2e-5})})
    arch = load_model("llama-3-8b")
    spec = KvCacheSpec()
    fp = kv_footprint(arch, spec, 1)
    args = (arch, load_gpu("h100-sxm"), load_profile("h100-sxm"), eng, 1, "bf16", spec, fp)
    on, off = StepModel(*args, streaming=True), StepModel(*args, streaming=False)
    scale = on.profile.host_time_scale
    assert on.host_time_s(100) - off.host_time_s(100) == pytest.approx(100 * 2e-5 * scale)
