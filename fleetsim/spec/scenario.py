"""A scenario: everything one simulation needs, validated before the clock starts.

Every field carries a description (its meaning, unit, bounds and what the default means); they
are what `fleetsim schema` prints. Bounds are physical and within what the code can hold; the
work a whole run would take is checked separately, before the clock starts (fleetsim.workbudget).
"""

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from fleetsim.precision import WEIGHT_DTYPES
from fleetsim.spec.base import (
    INTEGER,
    MAX_DURATION_S,
    MAX_GPUS,
    MAX_REPLICAS,
    MAX_REQUESTS,
    MAX_SEED,
    MAX_TOKENS,
    NUMBER,
    Duration,
    Name,
    NonNegativeDuration,
    PathText,
    RequestCount,
    Spec,
    Text,
    TokenCount,
)
from fleetsim.spec.dynamics import AdmissionSpec, AutoscalingSpec, BillingSpec, ClassPolicySpec, FailureSpec
from fleetsim.spec.economics import CostSpec, FacilitySpec
from fleetsim.spec.engine import EngineSpec
from fleetsim.spec.groups import GROUP_FIELDS, MAX_GROUPS, ReplicaGroupSpec
from fleetsim.spec.kvcache import KvCacheSpec
from fleetsim.spec.topology import DisaggregationSpec, LinkSpec, PipelineSpec, RoutingSpec, SpeculativeSpec
from fleetsim.spec.workload import MAX_CLASSES, WorkloadSpec

MAX_TP = 1024
MAX_RUNNING_SEQS = 1_000_000
MAX_BLOCK_TOKENS = 1_048_576
_YEARS = f"{MAX_DURATION_S:,.0f} s (10 years)"


class FleetSpec(Spec):
    """The GPUs: how many replicas of which GPU, how each is split, how requests are routed."""

    gpu: PathText = Field(
        default="h100-sxm", description="GPU: a catalog name (`fleetsim gpus`) or a path to a GPU YAML file."
    )
    replicas: Annotated[int, Field(ge=1, le=MAX_REPLICAS), INTEGER] = Field(
        default=1,
        description=f"Replicas (each a tensor-parallel group of `tp` GPUs); 1 to {MAX_REPLICAS:,}, "
        f"and replicas x tp at most {MAX_GPUS:,} GPUs. Default 1.",
    )
    tp: Annotated[int, Field(ge=1, le=MAX_TP), INTEGER] = Field(
        default=1,
        description=f"Tensor-parallel degree: GPUs per replica; 1 to {MAX_TP}. Default 1 (no tensor parallelism).",
    )
    gpu_memory_utilization: Annotated[float, Field(gt=0, le=1), NUMBER] = Field(
        default=0.9,
        description="Fraction of each GPU's memory the server may use (weights + workspace + KV pool); "
        "in (0, 1]. Default 0.9 (vLLM's default).",
    )
    kv_cache_free_memory_fraction: Annotated[float, Field(gt=0, le=1), NUMBER] | None = Field(
        default=None,
        description="TensorRT-LLM's way to size the KV pool: this fraction of the memory left after weights and "
        "workspace (kv_cache_free_gpu_mem_fraction); in (0, 1]. Default null: size it by gpu_memory_utilization.",
    )
    router: Literal[
        "round_robin",
        "random",
        "least_outstanding",
        "most_free_kv",
        "central_queue",
        "prefix_aware",
        "capacity_weighted",
    ] = Field(
        default="least_outstanding",
        description="How requests are spread over replicas: round_robin, random, least_outstanding "
        "(fewest requests in flight), most_free_kv, central_queue (one fleet queue), prefix_aware (cached "
        "prefix blocks and load, weighted by fleet.routing; session affinity), capacity_weighted (fewest in "
        "flight per unit of a replica's decode capacity: for mixed fleets; on one GPU type the same as "
        "least_outstanding). Default least_outstanding.",
    )
    routing: RoutingSpec | None = Field(
        default=None,
        description="Weights and session affinity of router prefix_aware (llm-d style score: cache_weight x "
        "cached share of the prompt's blocks + load_weight x (1 - load / max load)). Default null: the "
        "RoutingSpec defaults (weights 1, session affinity on).",
    )
    profile: PathText | None = Field(
        default=None,
        description="Calibration profile: a path to a profile YAML (relative to the scenario file's folder), "
        "or null (default) for the GPU's shipped profile.",
    )
    pods: Annotated[int, Field(ge=1, le=MAX_REPLICAS), INTEGER] = Field(
        default=1,
        description="Pods: the replicas split into this many groups, each behind its own router (several "
        "gateways, as large fleets are deployed); requests are spread over pods, then over a pod's replicas. "
        "1 to the number of replicas. Default 1 (one router over the whole fleet).",
    )
    power_limit_w: Annotated[float, Field(gt=0, le=20_000), NUMBER] | None = Field(
        default=None,
        description="Board power limit of every GPU, W (nvidia-smi -pl; MLPerf MaxQ): an iteration runs at the "
        "highest SM clock whose power is within it, so compute-bound work slows (fleetsim.dvfs). At least the "
        "GPU's minimum power limit; at or above its TDP it has no effect. Default null: the TDP.",
    )
    clock_fraction: Annotated[float, Field(gt=0, le=1), NUMBER] | None = Field(
        default=None,
        description="Locked SM clock as a fraction of the boost clock (nvidia-smi -lgc MHz / boost MHz), in "
        "(0, 1]: compute-bound time scales by 1 / fraction, power by the voltage curve (fleetsim.dvfs). "
        "A fraction, not MHz, so one value sweeps across GPUs. Default null: boost clocks.",
    )
    ep: Annotated[int, Field(ge=1, le=MAX_TP), INTEGER] | None = Field(
        default=None,
        description="Expert-parallel degree of a mixture-of-experts model (SGLang --ep-size, vLLM "
        "--enable-expert-parallel): routed experts split over this many of the replica's tp GPUs, all-to-all "
        "dispatch and combine per MoE layer instead of the MoE all-reduce. Divides tp and the routed experts. "
        "Default null: 1 (experts tensor-split).",
    )
    dp_attention: bool = Field(
        default=False,
        description="Data-parallel attention over the replica's tp GPUs (SGLang --enable-dp-attention --dp tp, "
        "vLLM --data-parallel-size): each GPU holds the attention weights whole and only its own sequences' KV "
        "(the MLA latent is not replicated). Mixture-of-experts models only. Default false.",
    )
    groups: tuple[ReplicaGroupSpec, ...] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_GROUPS,
        description=f"A mixed fleet: 1 to {MAX_GROUPS} replica groups, each with its own gpu, tp, replicas, "
        "profile and power_limit_w (fleetsim.groups). The groups replace fleet.gpu, tp, replicas, profile and "
        "power_limit_w: setting any of those to other than its default beside groups is refused. Default null: one group, the fields above.",
    )

    pipeline: PipelineSpec = Field(
        default=PipelineSpec(),
        description="Pipeline parallelism (vLLM --pipeline-parallel-size): each replica's layers split into "
        "`stages` consecutive stages of `tp` GPUs each, so a replica is stages x tp GPUs (fleetsim.pipeline). "
        "Default: one stage (no pipeline).",
    )
    tp_link: LinkSpec | None = Field(
        default=None,
        description="Link the tensor-parallel all-reduce crosses when tp exceeds the GPU's gpus_per_server "
        "(TP across servers; fleetsim.pipeline.multinode_allreduce_s). Default null: infiniband-ndr for such a tp, "
        "the GPU profile's in-server all-reduce otherwise.",
    )

    @property
    def gpus_per_replica(self) -> int:
        """GPUs of one replica: pipeline stages x tensor-parallel degree."""
        return self.tp * self.pipeline.stages

    @model_validator(mode="after")
    def _gpu_count(self):
        if self.groups is not None:
            if self.pipeline.stages > 1 or self.tp_link is not None:
                raise ValueError(
                    "pipeline or tp_link is set beside groups; valid: one or the other (a mixed fleet's "
                    "replicas are one tensor-parallel group each, inside a server)"
                )
            return self._check_groups()
        gpus = self.gpus_per_replica
        if self.replicas * gpus > MAX_GPUS:
            stages = f" x {self.pipeline.stages} stages" if self.pipeline.stages > 1 else ""
            raise ValueError(
                f"replicas x tp{' x stages' if stages else ''} = {self.replicas:,} x {self.tp}{stages} = "
                f"{self.replicas * gpus:,} GPUs; valid: at most {MAX_GPUS:,} GPUs"
            )
        if self.pods > self.replicas:
            raise ValueError(f"pods = {self.pods:,}; valid: 1 to the number of replicas ({self.replicas:,})")
        return self

    def _check_groups(self):
        # A value other than the default beside groups is ambiguous (a dump of a groups fleet holds
        # the defaults, so it validates again).
        defaults = FleetSpec.model_fields
        both = [f for f in GROUP_FIELDS if getattr(self, f) != defaults[f].default]
        if both:
            raise ValueError(
                f"{both[0]} is set beside groups; valid: one or the other (with groups, set it per group: "
                f"groups[i].{both[0]})"
            )
        if self.pods != 1:
            raise ValueError(f"pods = {self.pods:,} with groups; valid: 1 (a mixed fleet runs behind one router)")
        names = [g.name for g in self.groups or ()]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"groups[{i}].name: '{name[:80]}' is used twice; valid: a unique name per group")
        replicas = sum(g.replicas for g in self.groups or ())
        gpus = sum(g.replicas * g.tp for g in self.groups or ())
        if replicas < 1 or replicas > MAX_REPLICAS or gpus > MAX_GPUS:
            raise ValueError(
                f"groups: {replicas:,} replicas, {gpus:,} GPUs in all; valid: 1 to {MAX_REPLICAS:,} replicas "
                f"and at most {MAX_GPUS:,} GPUs"
            )
        return self


class SchedulerSpec(Spec):
    """vLLM-style continuous batching (V1 defaults for an online server)."""

    max_batched_tokens: TokenCount = Field(
        default=8192,
        description=f"Token budget of one scheduler iteration (prefill chunks + decodes); 1 to {MAX_TOKENS:,}. "
        "Default 8192.",
    )
    max_running_seqs: Annotated[int, Field(ge=1, le=MAX_RUNNING_SEQS), INTEGER] = Field(
        default=256, description=f"Sequences one replica runs at once; 1 to {MAX_RUNNING_SEQS:,}. Default 256."
    )
    chunked_prefill: bool = Field(
        default=True,
        description="Split long prompts into chunks that fit max_batched_tokens, mixed with decodes. Default true.",
    )
    block_tokens: Annotated[int, Field(ge=1, le=MAX_BLOCK_TOKENS), INTEGER] = Field(
        default=16, description=f"Tokens per paged KV-cache block; 1 to {MAX_BLOCK_TOKENS:,}. Default 16."
    )
    max_model_len: Annotated[int, Field(ge=1, le=2 * MAX_TOKENS), INTEGER] | None = Field(
        default=None,
        description=f"Requests longer than this many tokens (input + output) are rejected at arrival; "
        f"1 to {2 * MAX_TOKENS:,}. Default null: the model's context limit (or what the KV pool holds).",
    )
    max_queue: RequestCount | None = Field(
        default=None,
        description=f"Waiting requests beyond this are rejected at arrival; 1 to {MAX_REQUESTS:,}. "
        "Default null: an unbounded queue.",
    )


class SLOSpec(Spec):
    """Latency targets, and how a run is judged against them."""

    ttft_s: Duration = Field(
        default=2.0, description=f"Time-to-first-token target, seconds; > 0 and at most {_YEARS}. Default 2.0."
    )
    tpot_s: Duration = Field(
        default=0.1, description=f"Time-per-output-token target, seconds; > 0 and at most {_YEARS}. Default 0.1."
    )
    percentile: Annotated[float, Field(gt=0, lt=100), NUMBER] = Field(
        default=99.0, description="Latency percentile compared with the targets; in (0, 100). Default 99 (p99)."
    )
    attainment_target: Annotated[float, Field(gt=0, le=1), NUMBER] = Field(
        default=0.99,
        description="Fraction of requests that must meet both targets individually; in (0, 1]. Default 0.99.",
    )


class RunSpec(Spec):
    """How long to run and with which random stream."""

    duration_s: Duration | None = Field(
        default=600.0,
        description=f"Simulated seconds during which requests arrive; > 0 and at most {_YEARS}. "
        "Default 600. null: run until max_requests have arrived.",
    )
    max_requests: RequestCount | None = Field(
        default=None,
        description=f"Stop arrivals after this many requests; 1 to {MAX_REQUESTS:,} (the work budget checked "
        "before the run is lower). Default null: no count limit (duration_s ends the run).",
    )
    seed: Annotated[int, Field(ge=0, le=MAX_SEED), INTEGER] = Field(
        default=0,
        description="Seed of the run's random stream (numpy default_rng); 0 to 2^63 - 1. Same scenario and seed "
        "give the same summary. Default 0.",
    )
    drain: bool = Field(
        default=True,
        description="After arrivals stop, finish the requests in flight, so latencies are not survivor-biased. "
        "Default true.",
    )
    warmup_s: NonNegativeDuration = Field(
        default=0.0,
        description=f"Seconds at the start left out of the metrics; 0 to {_YEARS}. Default 0 (nothing left out).",
    )
    timeseries_interval_s: Duration | None = Field(
        default=None,
        description=f"Seconds between samples of the fleet time series; > 0 and at most {_YEARS} (at most "
        "1,000,000 samples a run, checked before the run). Default null: the run's length / 400.",
    )

    @model_validator(mode="after")
    def _some_limit(self):
        if self.duration_s is None and self.max_requests is None:
            raise ValueError("set run.duration_s or run.max_requests (or both)")
        return self


class ScenarioSpec(Spec):
    """One simulation: a model on a fleet of GPUs serving a workload, and what it costs."""

    name: Name = Field(
        default="scenario", description="Name shown in results; 1 to 200 characters. Default 'scenario'."
    )
    description: Text = Field(
        default="", description="Free text about the scenario; up to 10,000 characters. Default empty."
    )
    model: PathText = Field(
        description="Model: a catalog name (`fleetsim models`), or a path (relative to the scenario file's folder) "
        "to a Hugging Face config.json, a folder holding one, or a catalog-format YAML. Required."
    )
    weight_dtype: str = Field(
        default="bf16",
        description=f"Precision the weights are stored in: one of {', '.join(WEIGHT_DTYPES)}. Default bf16.",
    )
    kv_cache: KvCacheSpec = Field(
        default=KvCacheSpec(),
        description="KV-cache precision, eviction and prefix sharing. Default: bf16, no eviction.",
    )
    fleet: FleetSpec = Field(default=FleetSpec(), description="GPUs, replicas, tensor parallelism and routing.")
    scheduler: SchedulerSpec = Field(default=SchedulerSpec(), description="Continuous-batching limits of each replica.")
    engine: EngineSpec = Field(
        default=EngineSpec(),
        description="The serving engine and release (vLLM, SGLang, TensorRT-LLM): host time, launch cost and "
        "batching come from its profile. Default: the newest shipped vLLM.",
    )
    workload: WorkloadSpec = Field(description="What arrives: the arrival process and the request classes. Required.")
    slo: SLOSpec = Field(default=SLOSpec(), description="Latency targets (TTFT, TPOT) and the attainment judged.")
    facility: FacilitySpec = Field(
        default=FacilitySpec(), description="The building: PUE, water use, rack power budget."
    )
    cost: CostSpec = Field(default=CostSpec(), description="How the fleet is paid for: rental or owned (TCO).")
    run: RunSpec = Field(default=RunSpec(), description="Duration or request count, seed, drain, warm-up, sampling.")
    admission: AdmissionSpec = Field(
        default=AdmissionSpec(),
        description="What is refused at arrival beyond scheduler.max_queue: a token-bucket rate limit and a "
        "wait timeout (fleetsim.admission). Default: neither.",
    )
    speculative: SpeculativeSpec | None = Field(
        default=None,
        description="Speculative decoding or multi-token prediction (MTP): draft_tokens drafted per step and "
        "verified in one pass of the model; a decode step yields (1 - a^(k+1)) / (1 - a) tokens per sequence "
        "(fleetsim.speculative). Default null: one token per decode step.",
    )
    disaggregation: DisaggregationSpec | None = Field(
        default=None,
        description="Prefill/decode disaggregation: a prefill pool and a decode pool (each its own gpu, tp, "
        "replicas) and the link the KV moves over; fleet.gpu, fleet.tp and fleet.replicas are then not read "
        "(fleet.tp or fleet.replicas other than 1, or a fleet.gpu other than the default or the pools', is "
        "refused). Default null: "
        "one pool of fleet.replicas replicas serving both phases.",
    )
    classes: tuple[ClassPolicySpec, ...] = Field(
        default=(),
        max_length=MAX_CLASSES,
        description="Per workload class: its scheduling priority (higher first; preempted last) and its own TTFT "
        "and TPOT targets; each name a workload.classes[].name, each at most once. A class not listed has "
        "priority 0 and the scenario's slo. Default empty: every class priority 0 (FCFS).",
    )
    autoscaling: AutoscalingSpec | None = Field(
        default=None,
        description="A horizontal autoscaler over the fleet (fleetsim.sim.lifecycle): fleet.replicas is the "
        "initial count, within [min_replicas, max_replicas]; new replicas serve after the cold start (the "
        "weights' bytes over the load bandwidth). One pod only. Default null: a fixed fleet.",
    )
    failures: FailureSpec | None = Field(
        default=None,
        description="GPU and server failures injected into the run (rates from catalog/reliability.yaml): a "
        "failed replica's requests are re-queued, it serves again after repair and stays billed while down "
        "(an autoscaled instance is terminated instead and the autoscaler replaces it). "
        "One pod. Default null: no failures.",
    )
    billing: BillingSpec = Field(
        default=BillingSpec(),
        description="How the run's GPU time is billed in the summary's `bill`: the rental plan, the provider's "
        "granularity and minimum charge (catalog/billing.yaml) or explicit ones, reserved and spot discounts. "
        "Default: per-second billing with a one-minute minimum, on demand.",
    )

    @model_validator(mode="after")
    def _speculative_fleet(self):
        if self.speculative is not None and self.fleet.groups is not None:
            raise ValueError("speculative is set beside fleet.groups; valid: one or the other (not modelled together)")
        if self.disaggregation is not None and self.fleet.pipeline.stages > 1:
            raise ValueError(
                f"fleet.pipeline.stages = {self.fleet.pipeline.stages} with disaggregation: pipeline stages in "
                "prefill/decode pools are not modelled yet; valid: 1"
            )
        return self

    @model_validator(mode="after")
    def _class_policies(self):
        names = [c.name for c in self.workload.classes]
        seen: set[str] = set()
        for policy in self.classes:
            if policy.name not in names:
                raise ValueError(
                    f"classes: '{policy.name[:80]}' is not a workload class; valid: one of {', '.join(names)}"
                )
            if policy.name in seen:
                raise ValueError(f"classes: '{policy.name[:80]}' is listed twice; valid: each class at most once")
            seen.add(policy.name)
        return self

    @model_validator(mode="after")
    def _prefix_cache_mode(self):
        kv, fleet = self.kv_cache, self.fleet
        wants_blocks = kv.offload is not None or fleet.router == "prefix_aware"
        if kv.prefix_cache == "per_class" and wants_blocks:
            raise ValueError(
                "kv_cache.prefix_cache: 'per_class' cannot serve kv_cache.offload or router prefix_aware; "
                "valid: blocks, or null"
            )
        if (kv.prefix_cache == "blocks" or wants_blocks) and not kv.prefix_caching:
            raise ValueError("kv_cache.prefix_caching: false, but a block prefix cache is asked for; valid: true")
        if fleet.routing is not None and fleet.router != "prefix_aware":
            raise ValueError(f"fleet.routing is read by router prefix_aware only, not '{fleet.router}'")
        if fleet.routing is not None and fleet.routing.kind != "prefix_aware":
            raise ValueError(
                f"fleet.routing.kind: '{fleet.routing.kind}' is the pure model's baseline (fleetsim.prefix_cache."
                "replay); in a scenario the router is fleet.router; valid: prefix_aware"
            )
        if fleet.router == "prefix_aware" and fleet.pods > 1:
            raise ValueError(
                f"fleet.pods = {fleet.pods}: router prefix_aware runs in one pod (pods split requests at random, "
                "so a session's turns would scatter); valid: 1"
            )
        return self

    @model_validator(mode="after")
    def _dynamics(self):
        auto, fleet = self.autoscaling, self.fleet
        if (auto is not None or self.failures is not None) and fleet.pods > 1:
            raise ValueError(f"fleet.pods = {fleet.pods:,}; valid: 1 with autoscaling or failures")
        if (auto is not None or self.failures is not None) and self.speculative is not None:
            raise ValueError(
                "speculative: speculative decoding with autoscaling or failures is not simulated yet; valid: null"
            )
        if (auto is not None or self.failures is not None) and fleet.groups:
            raise ValueError(
                "fleet.groups: a mixed fleet with autoscaling or failures is not simulated yet; valid: one GPU type"
            )
        if auto is not None:
            if auto.min_replicas < 1:
                raise ValueError("autoscaling.min_replicas = 0; valid: at least 1 (scale to zero is not simulated)")
            if not auto.min_replicas <= fleet.replicas <= auto.max_replicas:
                raise ValueError(
                    f"fleet.replicas = {fleet.replicas:,}; valid: within autoscaling.min_replicas "
                    f"({auto.min_replicas:,}) to max_replicas ({auto.max_replicas:,})"
                )
            if auto.max_replicas * fleet.tp > MAX_GPUS:
                raise ValueError(
                    f"autoscaling.max_replicas x fleet.tp = {auto.max_replicas * fleet.tp:,} GPUs; "
                    f"valid: at most {MAX_GPUS:,}"
                )
        return self

    @field_validator("weight_dtype")
    @classmethod
    def _weight_dtype(cls, v: str) -> str:
        if v not in WEIGHT_DTYPES:
            raise ValueError(f"'{v[:80]}' is not a weight dtype; choose one of {', '.join(WEIGHT_DTYPES)}")
        return v
