"""The report's KV-capacity section: one sequence's KV bytes by architecture and how many sequences
fit one replica of the scenario's GPU (table and figure). Its own module: it re-derives memory
plans for a fixed list of reference models, independent of the run being reported.
"""

from __future__ import annotations

from fleetsim.api import kv_table, memory_plan
from fleetsim.catalog import load_gpu, load_model
from fleetsim.errors import CapacityError
from fleetsim.memory import valid_tp_degrees
from fleetsim.report import plots
from fleetsim.report.tables import Cell, Row, Table, cell
from fleetsim.spec.scenario import ScenarioSpec

KV_MODELS = ("gpt2-xl", "llama-3-8b", "llama-3-70b", "gemma-3-27b", "deepseek-v3", "mamba-2.8b")
KV_CONTEXT_TOKENS = 4096


def kv_section(spec: ScenarioSpec) -> tuple[Table, str]:
    models = list(dict.fromkeys([*KV_MODELS, spec.model])) if "/" not in spec.model else list(KV_MODELS)
    gpu = load_gpu(spec.fleet.gpu)
    df = kv_table(models, KV_CONTEXT_TOKENS, spec.kv_cache)
    t = Table(
        "t-kv",
        f"KV cache of one {KV_CONTEXT_TOKENS:,}-token sequence by architecture "
        f"(K {spec.kv_cache.key_dtype} / V {spec.kv_cache.value_dtype}, eviction {spec.kv_cache.eviction.kind}) "
        f"and how many fit in one {gpu.name} replica ({spec.weight_dtype} weights, smallest tp that fits)",
        "kv",
        [
            ("model", "model"),
            ("attention", "attention"),
            ("bytes_per_token", "bytes/token"),
            ("bytes_per_sequence", "MB/sequence"),
            ("tp", "tp"),
            ("max_concurrent_sequences", "sequences/replica"),
        ],
    )
    seqs = []
    for r in df.itertuples(index=False):
        tp, n = None, None
        for deg in valid_tp_degrees(load_model(r.model), limit=gpu.gpus_per_server):
            try:
                plan = memory_plan(
                    r.model,
                    gpu.name,
                    tp=deg,
                    weight_dtype=spec.weight_dtype,
                    kv=spec.kv_cache,
                    context_tokens=KV_CONTEXT_TOKENS,
                    gpu_memory_utilization=spec.fleet.gpu_memory_utilization,
                    block_tokens=spec.scheduler.block_tokens,
                )
            except CapacityError:
                continue
            tp, n = deg, plan.max_concurrent_sequences
            break
        seqs.append(n)
        t.rows.append(
            Row(
                r.model,
                [
                    Cell(r.model, "model"),
                    Cell(r.attention, "attention"),
                    cell("bytes_per_token", r.bytes_per_token),
                    cell("bytes_per_sequence", r.bytes_per_sequence, "mb"),
                    cell("tp", tp, "int") if tp else Cell("does not fit", "tp", css="na"),
                    cell("max_concurrent_sequences", n, "int"),
                ],
            )
        )
    fig = plots.kv_by_architecture(
        list(df["model"]), list(df["attention"]), list(df["bytes_per_token"]), seqs, KV_CONTEXT_TOKENS, gpu.name
    )
    return t, fig
