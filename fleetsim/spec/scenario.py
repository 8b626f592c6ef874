"""A scenario: everything one simulation needs, validated before the clock starts."""

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from fleetsim.precision import WEIGHT_DTYPES
from fleetsim.spec.base import Spec
from fleetsim.spec.economics import CostSpec, FacilitySpec
from fleetsim.spec.kvcache import KvCacheSpec
from fleetsim.spec.workload import WorkloadSpec

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class FleetSpec(Spec):
    gpu: str = "h100-sxm"
    replicas: PositiveInt = 1
    tp: PositiveInt = 1
    gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] = 0.9
    router: Literal["round_robin", "random", "least_outstanding", "most_free_kv", "central_queue"] = "least_outstanding"
    # Calibration profile: a path to a profile YAML, or null for the GPU's shipped default.
    profile: str | None = None


class SchedulerSpec(Spec):
    """vLLM-style continuous batching (V1 defaults for an online server)."""

    max_batched_tokens: PositiveInt = 8192
    max_running_seqs: PositiveInt = 256
    chunked_prefill: bool = True
    block_tokens: PositiveInt = 16
    # Requests longer than this (input + output) are rejected at arrival; null: model limit / pool.
    max_model_len: PositiveInt | None = None
    # Waiting requests beyond this are rejected at arrival; null: unbounded queue.
    max_queue: PositiveInt | None = None


class SLOSpec(Spec):
    ttft_s: PositiveFloat = 2.0
    tpot_s: PositiveFloat = 0.1
    percentile: Annotated[float, Field(gt=0, lt=100)] = 99.0
    # Fraction of requests that must meet both targets individually.
    attainment_target: Annotated[float, Field(gt=0, le=1)] = 0.99


class RunSpec(Spec):
    duration_s: PositiveFloat | None = 600.0
    max_requests: PositiveInt | None = None
    seed: int = 0
    # After arrivals stop, finish the requests in flight (so latencies are not survivor-biased).
    drain: bool = True
    warmup_s: Annotated[float, Field(ge=0)] = 0.0
    timeseries_interval_s: PositiveFloat | None = None  # null: duration / 400

    @model_validator(mode="after")
    def _some_limit(self):
        if self.duration_s is None and self.max_requests is None:
            raise ValueError("set run.duration_s or run.max_requests (or both)")
        return self


class ScenarioSpec(Spec):
    name: str = "scenario"
    description: str = ""
    model: str = Field(description="catalog name (fleetsim models) or a path to a Hugging Face config.json")
    weight_dtype: str = "bf16"
    kv_cache: KvCacheSpec = KvCacheSpec()
    fleet: FleetSpec = FleetSpec()
    scheduler: SchedulerSpec = SchedulerSpec()
    workload: WorkloadSpec
    slo: SLOSpec = SLOSpec()
    facility: FacilitySpec = FacilitySpec()
    cost: CostSpec = CostSpec()
    run: RunSpec = RunSpec()

    @field_validator("weight_dtype")
    @classmethod
    def _weight_dtype(cls, v: str) -> str:
        if v not in WEIGHT_DTYPES:
            raise ValueError(f"'{v}' is not a weight dtype; choose one of {', '.join(WEIGHT_DTYPES)}")
        return v
