"""Validation cases from the external hold-out candidates (calibration/research/conditions.yaml
`holdout_candidates`): published runs outside both reference files, collected to check fleetsim on
rounds, engines and model sizes it was never fitted to. Every group here is a hold-out; nothing is
fitted to them (the research file says so per entry). Called by make_cases.py.

Families built: TensorRT-LLM's developer-guide performance tables (trtllm-bench max-load
throughput, PyTorch backend: Llama 3.3 70B, DeepSeek R1 0528, GPT-OSS 120B on H100/H200/B200/GB200),
Azure's ND GB200 v6 TensorRT-LLM table, Lambda's vLLM v0.5.4 / v0.6.0 benchmark, and MLPerf
v5.1 TensorRT-LLM Offline/Server runs of the models and GPUs conditions.yaml has NVIDIA harness
settings for (make_cases.mlperf, with this round's engine and group).
"""

from __future__ import annotations

import re

from make_cases import Cases, bench_overrides, bench_settings, case, engine_overrides, gpu_name, mlperf, source

EXTERNAL_MODELS = {
    "Llama 3.3 70B": "llama-3.1-70b",  # Llama 3.3 70B has the Llama 3.1 70B architecture
    "Llama 3 70B": "llama-3-70b",
    "Llama 3.1 8B": "llama-3.1-8b",
    "DeepSeek R1 0528": "deepseek-v3",  # DeepseekV3ForCausalLM, the same config.json
    "GPT-OSS 120B": "gpt-oss-120b",
}


def _kv_bytes_per_token(model: str) -> float:
    """KV bytes of one token of the whole model in fp8 (fleetsim's footprint: for GQA the heuristic's
    2 x layers x kv_heads x head_dim; the latent for MLA; windowed layers capped)."""
    from fleetsim.catalog import load_model
    from fleetsim.memory import kv_footprint
    from fleetsim.spec.kvcache import KvCacheSpec

    fp = kv_footprint(load_model(model), KvCacheSpec(key_dtype="fp8", value_dtype="fp8"))
    return float(fp.full_bytes_per_token_per_rank)


def _parallelism(text: str, gpus: int) -> dict:
    """'TP4' -> tensor parallel; 'DEP4' -> attention data parallel + expert parallel over 4 GPUs."""
    m = re.fullmatch(r"(D?EP|TP)(\d+)", str(text))
    if m is None:
        raise ValueError(f"parallelism '{text}' not understood")
    n = int(m.group(2))
    if n != gpus:
        raise ValueError(f"parallelism '{text}' on {gpus} GPUs")
    if m.group(1) == "DEP":
        return {"fleet.tp": n, "fleet.ep": n, "fleet.dp_attention": True}
    return {"fleet.tp": n}


def trtllm_devguide(cases: Cases, cands: list, cond: dict) -> None:
    """trtllm-bench throughput, all requests queued at once, fixed ISL/OSL, EOS off; the tables give
    output tokens/s per GPU (metric_definition), so the case's figure is value x GPUs."""
    bench = cond["trtllm_bench"]
    settings = cond["external"]["trtllm_devguide"]
    for e in cands:
        if not (e["id"].startswith("trtllm_devguide_") or e["id"].startswith("azure_gb200_")):
            continue
        c = e["conditions"]
        azure = e["id"].startswith("azure_gb200_")
        model = EXTERNAL_MODELS[c["model"]]
        gpu = gpu_name(c["gpu"])
        gpus = int(c["num_gpus"])
        isl, osl = int(c["input_len"]), int(c["output_len"])
        dtype = "fp4" if "FP4" in str(c["precision"]) else "fp8"
        par = {"fleet.tp": int(c["tensor_parallel"])} if azure else _parallelism(c["parallelism"], gpus)
        n = int(c["num_requests"]) if azure else settings["num_requests"][f"{isl}/{osl}"]
        bs, tokens = bench_settings(model, gpu, gpus, dtype, _kv_bytes_per_token(model), isl, osl, bench)
        # FP8/NVFP4 checkpoints force an fp8 KV cache (trtllm-bench build.py); GPT-OSS on Hopper runs
        # kv_cache_config.dtype auto, the model's bf16 (the tables' llm_options).
        kv = "bf16" if model.startswith("gpt-oss") and gpu in ("h100-sxm", "h200") else "fp8"
        ov = bench_overrides(cond, model, dtype, kv, gpu, par, bs, tokens, n, isl, osl)
        total = float(e["value"]) if azure else float(e["value"]) * gpus
        what = "Output tokens/s of the GPU group" if azure else f"Per-GPU output tokens/s {e['value']} x {gpus} GPUs"
        note = (
            f"{what}; {c['model']} {dtype} on {gpus}x {c['gpu']} {c.get('parallelism', 'TP' + str(c.get('tensor_parallel')))}, "
            f"ISL/OSL {isl}/{osl}, {n} requests at once; trtllm-bench heuristic max_batch_size {bs}, "
            f"max_num_tokens {tokens} (over the group); KV {kv}"
        )
        family = "azure" if azure else "devguide"
        group = f"external-trtllm-{family}-" + ("dense" if model.startswith("llama") else "moe")
        tag = e["id"].replace("_", "-")
        cases.add(
            "external-trtllm",
            group,
            case(tag, ov, "output_tokens_per_s", total, "tokens/s", source(e, note), window="run"),
        )


def lambda_vllm(cases: Cases, cands: list, cond: dict) -> None:
    """Lambda's vLLM benchmark: ShareGPT through benchmark_serving.py at request rate inf,
    max-num-seqs 256, max-seq-len 2048 (the v0.5.4 vs v0.6.0 tables)."""
    lam = cond["external"]["lambda_vllm"]
    lengths = lam["sharegpt_lengths"]
    for e in cands:
        if not e["id"].startswith("lambda_vllm0"):
            continue
        c = e["conditions"]
        if "num_prompts" in c and int(c["num_prompts"]) == 320:
            continue  # the TP-vs-DP table: max-num-seqs and lengths not stated for that run
        fw = c["framework"]
        model = {"8B": "llama-3.1-8b", "70B": "llama-3.1-70b", "405B": "llama-3.1-405b"}[
            re.search(r"(8B|70B|405B)", c["model"]).group(1)
        ]
        tp = int(c["tensor_parallel"])
        n = int(c["num_prompts"])
        dtype = "fp8" if "FP8" in c["model"] else "bf16"
        multi_step = re.search(r"steps (\d+)", fw)
        steps = int(multi_step.group(1)) if multi_step else 1
        chunked = "chunked prefill on" in fw
        v0 = lam["v0_max_batched_tokens"]
        budget = v0["chunked"] if chunked else max(int(c["max_seq_len"]), v0["unchunked_floor"])
        engine = engine_overrides(cond, "vllm-0.6-lambda")
        if steps > 1:  # --num-scheduler-steps
            engine["engine"] = {**engine["engine"], "scheduler_steps": steps}
        ov = {
            **engine,
            "model": model,
            "weight_dtype": dtype,
            "fleet.gpu": gpu_name(c["gpu"]),
            "fleet.tp": tp,
            "scheduler.max_running_seqs": int(c["max_num_seqs"]),
            "scheduler.max_model_len": int(c["max_seq_len"]),
            "scheduler.chunked_prefill": chunked,
            "scheduler.max_batched_tokens": budget,
            "workload.arrival": {"kind": "offline", "requests": n},
            "workload.classes.0.input_tokens": lengths["input"],
            "workload.classes.0.output_tokens": lengths["output"],
            "run.max_requests": n,
            "run.duration_s": None,
        }
        note = (
            f"{fw}; {c['model']} {dtype} TP{tp} on {c['gpu']}, ShareGPT {n} prompts at rps=inf, max-num-seqs "
            f"{c['max_num_seqs']}, max-num-batched-tokens {budget} (V0's default); lengths: {lengths['source']}"
        )
        base = e["id"].replace("_", "-")
        rel = e.get("related_measurements", {})
        rows = [("tps", "output_tokens_per_s", e["value"], "tokens/s", "mean", "Output token throughput")]
        if "median_tpot_ms" in rel:
            rows.append(("tpot", "tpot_s", rel["median_tpot_ms"], "ms", "p50", "Median TPOT"))
        if "median_itl_ms" in rel:
            rows.append(("itl", "itl_s", rel["median_itl_ms"], "ms", "p50", "Median ITL"))
        for suffix, metric, value, unit, stat, what in rows:
            cases.add(
                "external-vllm",
                "external-vllm-lambda",
                case(
                    f"{base}-{suffix}",
                    ov,
                    metric,
                    value,
                    unit,
                    source(e, f"{what}; {note}"),
                    statistic=stat,
                    window="run",
                ),
            )


def v51_round(e: dict, model: str, gpu: str, n_gpus: int, scenario: str, framework: str) -> tuple[str, str, str] | None:
    """MLPerf v5.1 TensorRT-LLM runs from the official result logs (the v5.0 candidates are a
    secondary export without target QPS or latencies). Interactive runs wait for NVIDIA's
    interactive harness configuration, which conditions.yaml does not hold."""
    if not e["id"].startswith("mlperf51_") or "TensorRT" not in framework or scenario == "interactive":
        return None
    return "v5.1", "mlperf-v5.1-nvidia", "external-mlperf51-trtllm"


def external(cases: Cases, research: dict, cond: dict) -> None:
    cands = research["holdout_candidates"]
    trtllm_devguide(cases, cands, cond)
    lambda_vllm(cases, cands, cond)
    mlperf(cases, cands, cond, research, classify=v51_round, file="external-mlperf")
