"""Serving topologies beyond one tensor-parallel group: prefill/decode pools and the link between
them, pipeline stages, speculative decoding / MTP, a host KV-offload tier and prefix-aware
routing. Frozen, unknown keys refused, every field described (``fleetsim schema`` shows them).

These specs are read by the pure models (fleetsim.kv_transfer, fleetsim.pipeline,
fleetsim.speculative, fleetsim.prefix_cache). ``fleet.pipeline: PipelineSpec`` (default one
stage), ``fleet.tp_link: LinkSpec | None`` (the link an all-reduce crosses when tp exceeds a
server) and ``speculative: SpeculativeSpec | None`` are ScenarioSpec fields the simulator reads
(fleetsim.pipeline_model, fleetsim.speculative_model); so are ``fleet.routing`` and
``kv_cache.offload`` (below), and ``disaggregation: DisaggregationSpec | None``
(fleetsim.sim.disaggregated).

YAML shape::

    disaggregation:
      prefill: {gpu: h100-sxm, tp: 2, replicas: 3}
      decode: {gpu: h100-sxm, tp: 4, replicas: 2}
      link: {name: infiniband-ndr}
    pipeline: {stages: 2, micro_batches: 4, link: {name: infiniband-ndr}}
    speculative: {method: mtp, draft_tokens: 1}
    kv_offload: {host_bytes: 5.0e+11, link: {name: pcie-gen5}}
    routing: {kind: prefix_aware, cache_weight: 1.0, load_weight: 1.0, session_affinity: true}

In a scenario now: ``kv_cache.offload`` and ``fleet.routing`` (with ``fleet.router: prefix_aware``),
read by the simulator's block cache (fleetsim.sim.block_cache).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from fleetsim.spec.base import INTEGER, MAX_REPLICAS, NUMBER, Fraction, Name, PathText, Spec

MAX_TP = 1024
MAX_STAGES = 256
MAX_DRAFT_TOKENS = 32
MAX_MICRO_BATCHES = 100_000
Bandwidth = Annotated[float, Field(gt=0, le=1e16), NUMBER]
Latency = Annotated[float, Field(ge=0, le=1.0), NUMBER]
Weight = Annotated[float, Field(ge=0, le=1e6), NUMBER]
Efficiency = Annotated[float, Field(gt=0, le=1), NUMBER]


class LinkSpec(Spec):
    """A link by catalog name (fleetsim/catalog/links.yaml), or by its own figures; a figure given
    next to a name replaces the catalog's."""

    name: Name | None = Field(
        default=None,
        description="Catalog link (nvlink4, nvlink5, nvlink-c2c, pcie-gen5, pcie-gen4, infiniband-ndr, "
        "infiniband-xdr, roce-400g, roce-200g, ethernet-100g). Default null: give bandwidth_bytes_per_s.",
    )
    bandwidth_bytes_per_s: Bandwidth | None = Field(
        default=None,
        description="One-direction bandwidth per GPU, bytes per second; > 0 and at most 1e16. "
        "Default null: the catalog link's.",
    )
    latency_s: Latency | None = Field(
        default=None, description="One-way latency of a transfer, seconds; 0 to 1. Default null: the catalog link's."
    )
    efficiency: Efficiency | None = Field(
        default=None,
        description="Share of the bandwidth a large transfer reaches; > 0 and at most 1. Default null: the "
        "catalog link's (1 for a link given by its figures).",
    )

    @model_validator(mode="after")
    def _named_or_figures(self):
        if self.name is None and self.bandwidth_bytes_per_s is None:
            raise ValueError("a link needs a catalog name or bandwidth_bytes_per_s")
        return self


class PoolSpec(Spec):
    """One pool of identical replicas (a prefill pool or a decode pool)."""

    gpu: PathText = Field(description="GPU of the pool: a catalog name (fleetsim gpus) or a file. Required.")
    tp: Annotated[int, Field(ge=1, le=MAX_TP), INTEGER] = Field(
        default=1, description=f"Tensor-parallel degree of one replica; 1 to {MAX_TP}. Default 1."
    )
    replicas: Annotated[int, Field(ge=1, le=MAX_REPLICAS), INTEGER] = Field(
        default=1, description=f"Replicas in the pool; 1 to {MAX_REPLICAS:,}. Default 1."
    )
    rental_usd_per_gpu_hour: Annotated[float, Field(ge=0, le=10_000), NUMBER] | None = Field(
        default=None,
        description="Rental price of this pool's GPUs, $/GPU-hour, 0 to 10,000. Default null: "
        "cost.rental_usd_per_gpu_hour if set, else the GPU's catalog price.",
    )


class DisaggregationSpec(Spec):
    """Prefill/decode disaggregation: prompts run on the prefill pool, their KV moves over `link`
    to a decode replica, which admits the request once the transfer ends."""

    prefill: PoolSpec = Field(description="The prefill pool. Required.")
    decode: PoolSpec = Field(description="The decode pool. Required.")
    link: LinkSpec = Field(
        default=LinkSpec(name="infiniband-ndr"),
        description="Link the KV moves over (between servers: infiniband-ndr, roce-400g; inside one: "
        "nvlink4). Default infiniband-ndr.",
    )
    layer_pipelined: bool = Field(
        default=True,
        description="Send each layer's KV as soon as prefill finishes it (only the last layer's share and "
        "the latency remain after the prefill), as NIXL/Mooncake/DistServe do. Default true.",
    )
    ttft_at: Literal["prefill", "handoff"] = Field(
        default="prefill",
        description="When the first token counts as out: prefill (when the prefill replica samples it, the "
        "engine-side TTFT) or handoff (when its KV and the token reach the decode replica, which streams every "
        "token to the client, as SGLang's P/D under Dynamo does: the client-side TTFT, transfer included). "
        "TPOT counts from that time. Default prefill.",
    )


class PipelineSpec(Spec):
    """Pipeline parallelism: the layers split into `stages` consecutive stages, each a TP group."""

    stages: Annotated[int, Field(ge=1, le=MAX_STAGES), INTEGER] = Field(
        default=1, description=f"Pipeline stages (pp); 1 to {MAX_STAGES}. Default 1 (no pipeline)."
    )
    micro_batches: Annotated[int, Field(ge=1, le=MAX_MICRO_BATCHES), INTEGER] | None = Field(
        default=None,
        description=f"Micro-batches in flight per step; 1 to {MAX_MICRO_BATCHES:,}. Default null: as many as "
        "stages (the engines' default: vLLM and SGLang keep pp batches in flight).",
    )
    layers_per_stage: tuple[Annotated[int, Field(ge=1, le=100_000), INTEGER], ...] | None = Field(
        default=None,
        max_length=MAX_STAGES,
        description="Layers of each stage, first to last, summing to the model's layers. Default null: "
        "an even split (stages must divide the layers), as VLLM_PP_LAYER_PARTITION sets it.",
    )
    link: LinkSpec = Field(
        default=LinkSpec(name="infiniband-ndr"),
        description="Link between stages (activations of a micro-batch). Default infiniband-ndr.",
    )


class SpeculativeSpec(Spec):
    """Speculative decoding: `draft_tokens` tokens drafted per step, verified by the target in one
    pass; each accepted with probability `acceptance` given the ones before it were."""

    method: Literal["mtp", "draft_model"] = Field(
        description="mtp: the model's own multi-token-prediction head drafts (DeepSeek-V3); draft_model: a "
        "smaller catalog model drafts. Required."
    )
    draft_tokens: Annotated[int, Field(ge=1, le=MAX_DRAFT_TOKENS), INTEGER] = Field(
        default=1, description=f"Tokens drafted per step (k); 1 to {MAX_DRAFT_TOKENS}. Default 1."
    )
    acceptance: Fraction | None = Field(
        default=None,
        description="Chain acceptance rate of one draft token; 0 to 1. Default null: the published default "
        "for the method (fleetsim/catalog/speculative.yaml: DeepSeek-V3 MTP 0.875).",
    )
    acceptance_by_position: tuple[Fraction, ...] | None = Field(
        default=None,
        max_length=MAX_DRAFT_TOKENS,
        description="Acceptance of draft position 1..k given the earlier ones were accepted, one per draft "
        "token. Default null: `acceptance` at every position.",
    )
    acceptance_by_class: dict[Name, Fraction] = Field(
        default_factory=dict,
        description="Chain acceptance per workload class name (code and chat accept differently). "
        "Default {}: `acceptance` for every class.",
    )
    draft_model: PathText | None = Field(
        default=None,
        description="method draft_model: the drafting model (catalog name or config.json). Required for it; "
        "null for mtp.",
    )
    draft_tp: Annotated[int, Field(ge=1, le=MAX_TP), INTEGER] | None = Field(
        default=None, description="TP of the draft model. Default null: the target's TP."
    )
    mtp_layers: Annotated[int, Field(ge=1, le=64), INTEGER] = Field(
        default=1,
        description="method mtp: transformer layers of the MTP head (DeepSeek-V3: 1); 1 to 64. Default 1.",
    )

    @model_validator(mode="after")
    def _consistent(self):
        if self.method == "draft_model" and self.draft_model is None:
            raise ValueError("method draft_model needs draft_model (a catalog model name)")
        if self.method == "mtp" and self.draft_model is not None:
            raise ValueError("method mtp drafts with the model's own head; leave draft_model out")
        by_pos = self.acceptance_by_position
        if by_pos is not None and len(by_pos) != self.draft_tokens:
            raise ValueError(
                f"acceptance_by_position has {len(by_pos)} entries; give one per draft token ({self.draft_tokens})"
            )
        return self


class KvOffloadSpec(Spec):
    """A host-memory (and optional disk) tier below the GPU KV pool: evicted prefix blocks move
    there and come back by reload when that is faster than recomputing them."""

    host_bytes: Annotated[float, Field(ge=0, le=1e15), NUMBER] = Field(
        description="Host memory for KV per replica, bytes; 0 to 1e15. Required."
    )
    link: LinkSpec = Field(
        default=LinkSpec(name="pcie-gen5"),
        description="GPU <-> host link (pcie-gen5; nvlink-c2c on GH200/GB200). Default pcie-gen5.",
    )
    disk_bytes: Annotated[float, Field(ge=0, le=1e16), NUMBER] = Field(
        default=0.0, description="Local disk (NVMe) for KV per replica, bytes; 0 to 1e16. Default 0 (none)."
    )
    disk_bandwidth_bytes_per_s: Bandwidth = Field(
        default=7.0e9,
        description="Disk read bandwidth, bytes per second. Default 7e9 (one PCIe Gen4 NVMe drive, ~7 GB/s "
        "sequential read).",
    )


class RoutingSpec(Spec):
    """How a request picks a replica. prefix_aware scores each replica as
    ``cache_weight x cached_prefix_blocks_share - load_weight x load_share`` (llm-d's precise
    prefix-cache scorer and load scorer, Dynamo's KV router cost: overlap blocks against active
    blocks) and takes the best."""

    kind: Literal["least_outstanding", "prefix_aware"] = Field(
        default="prefix_aware", description="Router kind. Default prefix_aware."
    )
    cache_weight: Weight = Field(
        default=1.0, description="Weight of the share of the prompt's blocks a replica holds; 0 to 1e6. Default 1."
    )
    load_weight: Weight = Field(
        default=1.0, description="Weight of the replica's share of the fleet's load; 0 to 1e6. Default 1."
    )
    session_affinity: bool = Field(
        default=True, description="Send a session's later turns to the replica of its first turn. Default true."
    )
    scorer: Literal["llm_d", "dynamo"] = Field(
        default="llm_d",
        description="prefix_aware's score: llm_d (cache_weight x cached share of the prompt's blocks + "
        "load_weight x (1 - outstanding / the most outstanding), highest wins) or dynamo (NVIDIA Dynamo's KV "
        "router: cache_weight x blocks to prefill + the replica's active blocks + the prompt's, lowest wins). "
        "Default llm_d.",
    )
