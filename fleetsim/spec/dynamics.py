"""Specs of the fleet over time: autoscaling, failures, admission control, class priorities, billing.

The pure models that read them are fleetsim/autoscaler.py, fleetsim/failures.py,
fleetsim/admission.py and fleetsim/bill.py. AdmissionSpec, ClassPolicySpec, AutoscalingSpec and
FailureSpec are fields of ScenarioSpec (`admission`, `classes`, `autoscaling`, `failures`) and the
simulator applies them (fleetsim/sim/lifecycle.py); BillingSpec is read by fleetsim.bill.

Defaults carry their source: Kubernetes' HPA defaults (sync period 15 s, tolerance 0.1, scale-down
stabilization 300 s, scale-up 0 s; kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale
and the autoscaling/v2 HPAScalingRules API reference), fleetsim/catalog/reliability.yaml and
fleetsim/catalog/billing.yaml, or the word "assumption".
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from fleetsim.spec.base import (
    INTEGER,
    MAX_DURATION_S,
    MAX_RATE_PER_S,
    MAX_REPLICAS,
    MAX_REQUESTS,
    NUMBER,
    Duration,
    Fraction,
    Name,
    NonNegativeDuration,
    Spec,
)

MAX_BANDWIDTH_BYTES_PER_S = 1e13  # 10 TB/s: above any storage or network path a replica loads from
MAX_QUEUE_PER_REPLICA = 1e6
MAX_PRIORITY = 1000
MAX_GROWTH_PER_MONTH = 10.0  # 1000 % a month
Replicas = Annotated[int, Field(ge=0, le=MAX_REPLICAS), INTEGER]
PositiveHours = Annotated[float, Field(gt=0, le=MAX_DURATION_S / 3600), NUMBER]


class AutoscalingSpec(Spec):
    """A horizontal autoscaler over one replica group, Kubernetes-HPA style.

    Each scrape computes desired = ceil(current x signal / target) (the HPA formula), skipped
    while |signal / target - 1| <= tolerance; scale-down takes the highest recommendation of the
    last `scale_down_stabilization_s`, scale-up the lowest of the last `scale_up_stabilization_s`.
    A new replica serves after provisioning_delay_s + weights bytes / load bandwidth +
    engine_start_s; a removed one stops taking requests at once and is released when drained
    (at most drain_timeout_s later).
    """

    signal: Literal["utilization", "queue", "latency"] = Field(
        default="utilization",
        description="What the autoscaler tracks: utilization (busy fraction of ready replicas), queue (waiting "
        "requests per ready replica) or latency (the observed TTFT percentile, seconds). Default utilization.",
    )
    target: Annotated[float, Field(gt=0, le=MAX_QUEUE_PER_REPLICA), NUMBER] = Field(
        default=0.7,
        description="Target of the signal: a busy fraction in (0, 1] for utilization, requests per replica for "
        "queue, seconds for latency. Default 0.7 (assumption: 70% busy).",
    )
    tolerance: Annotated[float, Field(ge=0, lt=1), NUMBER] = Field(
        default=0.1,
        description="No change while |signal / target - 1| is at most this; in [0, 1). Default 0.1 (HPA's "
        "--horizontal-pod-autoscaler-tolerance).",
    )
    scrape_interval_s: Duration = Field(
        default=15.0,
        description="Seconds between metric scrapes (autoscaler decisions); > 0. Default 15 (HPA sync period).",
    )
    scale_down_stabilization_s: NonNegativeDuration = Field(
        default=300.0,
        description="Scale-down uses the highest recommendation of this many past seconds; >= 0. Default 300 "
        "(HPA behavior.scaleDown.stabilizationWindowSeconds).",
    )
    scale_up_stabilization_s: NonNegativeDuration = Field(
        default=0.0,
        description="Scale-up uses the lowest recommendation of this many past seconds; >= 0. Default 0 (HPA: "
        "scale up at once).",
    )
    scale_up_max_percent: Annotated[float, Field(gt=0, le=1e6), NUMBER] | None = Field(
        default=None,
        description="At most this percent of the current replicas added per scrape (with scale_up_max_replicas, "
        "the larger limit applies, as the HPA's selectPolicy Max); > 0. Default null: no limit. The HPA's own "
        "default is 100 (with 4 replicas) per 15 s.",
    )
    scale_up_max_replicas: Annotated[int, Field(ge=1, le=MAX_REPLICAS), INTEGER] | None = Field(
        default=None,
        description="At most this many replicas added per scrape (see scale_up_max_percent); >= 1. Default null: "
        "no limit.",
    )
    min_replicas: Replicas = Field(default=1, description="Fewest replicas; 0 to 100,000. Default 1.")
    max_replicas: Annotated[int, Field(ge=1, le=MAX_REPLICAS), INTEGER] = Field(
        default=64, description="Most replicas; 1 to 100,000, at least min_replicas. Default 64 (assumption)."
    )
    provisioning_delay_s: NonNegativeDuration = Field(
        default=120.0,
        description="Seconds from a scale-up decision to a booted GPU node (instance start, image, drivers); "
        "0 for a warm pool. Default 120 (assumption).",
    )
    weights_load_bandwidth_bytes_per_s: Annotated[float, Field(gt=0, le=MAX_BANDWIDTH_BYTES_PER_S), NUMBER] = Field(
        default=2.0e9,
        description="Bytes per second the weights load at into the replica (storage or network path); > 0. "
        "Default 2e9 (assumption: a 16 Gb/s object-store read; a local NVMe reads ~7e9).",
    )
    engine_start_s: NonNegativeDuration = Field(
        default=60.0,
        description="Seconds of serving-engine start beyond the weights load (process start, CUDA graphs "
        "capture, KV pool allocation, warm-up); >= 0. Default 60 (assumption).",
    )
    drain_timeout_s: NonNegativeDuration = Field(
        default=600.0,
        description="A replica being removed is released when its requests finish, at most this many seconds "
        "after the decision (the rest are re-queued); >= 0. Default 600 (assumption).",
    )

    capacity_requests_per_s: Annotated[float, Field(gt=0, le=MAX_RATE_PER_S), NUMBER] | None = Field(
        default=None,
        description="Signal utilization in the simulator: requests per second one ready replica serves at "
        "utilization 1 (offered load = arrivals of the last scrape interval / (ready replicas x this x the "
        "interval)); > 0. Default null: the replica's full-batch steady-state throughput (fleetsim.steady).",
    )

    @model_validator(mode="after")
    def _bounds(self):
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas = {self.min_replicas:,} is above max_replicas = {self.max_replicas:,}; valid: "
                "min_replicas <= max_replicas"
            )
        if self.signal == "utilization" and self.target > 1:
            raise ValueError(f"target = {self.target:g} for signal utilization; valid: a busy fraction in (0, 1]")
        return self


class FailureSpec(Spec):
    """GPU and server failures as alternating up/down renewal processes (fleetsim/failures.py).

    `source` names an entry of fleetsim/catalog/reliability.yaml whose MTBF and repair times are
    used; the explicit fields below override them.
    """

    source: Name = Field(
        default="llama3-405b-2024",
        description="Entry of fleetsim/catalog/reliability.yaml the failure rates come from. Default "
        "llama3-405b-2024 (Meta, The Llama 3 Herd of Models, 16,384 H100 for 54 days).",
    )
    gpu_mtbf_h: PositiveHours | None = Field(
        default=None,
        description="Mean hours between failures of one GPU; > 0. Default null: from `source`.",
    )
    server_mtbf_h: PositiveHours | None = Field(
        default=None,
        description="Mean hours between failures of one server's non-GPU parts (host, NIC, power, network); > 0. "
        "Default null: from `source`.",
    )
    gpu_repair_h: PositiveHours | None = Field(
        default=None,
        description="Mean hours a failed GPU keeps its replica down; > 0. Default null: from `source`.",
    )
    server_repair_h: PositiveHours | None = Field(
        default=None,
        description="Mean hours a failed server keeps its replicas down; > 0. Default null: from `source`.",
    )
    distribution: Literal["exponential", "weibull"] = Field(
        default="exponential",
        description="Time-to-failure distribution: exponential (constant hazard) or weibull (with weibull_shape). "
        "Default exponential.",
    )
    weibull_shape: Annotated[float, Field(gt=0, le=20), NUMBER] = Field(
        default=1.0,
        description="Weibull shape k (k < 1 infant mortality, 1 exponential, > 1 wear-out); in (0, 20]. Default 1.",
    )
    repair_distribution: Literal["fixed", "exponential"] = Field(
        default="exponential",
        description="Repair time: fixed (always the mean) or exponential. Default exponential.",
    )
    compare_without: bool = Field(
        default=True,
        description="In a simulation, also run the same scenario and seed without failures and report its SLO "
        "attainment beside (slo.attainment_without_failures); doubles the run time. Default true.",
    )


class TokenBucketSpec(Spec):
    """Rate limit at admission: `rate_per_s` tokens refill a bucket of `burst` tokens; each request takes one."""

    rate_per_s: Annotated[float, Field(gt=0, le=MAX_RATE_PER_S), NUMBER] = Field(
        description="Admitted requests per second, sustained; > 0. Required."
    )
    burst: Annotated[float, Field(ge=1, le=MAX_REQUESTS), NUMBER] = Field(
        default=1.0, description="Bucket size: requests admitted back to back after a quiet spell; >= 1. Default 1."
    )


class AdmissionSpec(Spec):
    """What is refused at the door beyond scheduler.max_queue (the queue limit the simulator
    already applies, passed to fleetsim.admission.Admission): a wait timeout and a token bucket."""

    queue_timeout_s: Duration | None = Field(
        default=None,
        description="A request still waiting (never scheduled) this many seconds after arrival is rejected then; "
        "one preempted and waiting again is not. > 0. Default null: it waits.",
    )
    token_bucket: TokenBucketSpec | None = Field(
        default=None,
        description="Rate limit at arrival, checked after the queue limit (a request refused for a full queue "
        "takes no token). With fleet.pods > 1 each pod's gateway has its own bucket: its share of the replicas "
        "times the rate and the burst (at least 1). Default null: none.",
    )


class ClassPolicySpec(Spec):
    """One request class's priority and its own latency targets."""

    name: Name = Field(description="The workload class (a workload.classes[].name) it applies to. Required.")
    priority: Annotated[int, Field(ge=0, le=MAX_PRIORITY), INTEGER] = Field(
        default=0,
        description="Higher is scheduled first and preempted last; 0 to 1000. Default 0.",
    )
    ttft_s: Duration | None = Field(
        default=None, description="This class's time-to-first-token target, s. Default null: the scenario's slo."
    )
    tpot_s: Duration | None = Field(
        default=None, description="This class's time-per-output-token target, s. Default null: the scenario's slo."
    )


class BillingSpec(Spec):
    """How GPU time is billed and what energy weighs (fleetsim/bill.py; figures in catalog/billing.yaml)."""

    plan: Literal["on_demand", "reserved", "spot"] = Field(
        default="on_demand",
        description="Rental plan priced: on_demand (cost.rental_usd_per_gpu_hour), reserved (that x (1 - "
        "reserved_discount)) or spot (x (1 - spot_discount), plus rework of interruptions). Default on_demand.",
    )
    provider: Name | None = Field(
        default=None,
        description="Entry of fleetsim/catalog/billing.yaml whose granularity and minimum charge apply. "
        "Default null: the fields below.",
    )
    granularity_s: Duration = Field(
        default=1.0,
        description="Each instance lifetime is rounded up to a whole number of these seconds; > 0. Default 1 "
        "(per-second billing).",
    )
    minimum_charge_s: NonNegativeDuration = Field(
        default=60.0,
        description="Shortest billed lifetime of an instance, s; >= 0. Default 60 (EC2 and Compute Engine "
        "per-second billing with a one-minute minimum).",
    )
    reserved_discount: Fraction = Field(
        default=0.35,
        description="Reserved price = on-demand x (1 - this); 0 to 1. Default 0.35 (1-year GPU reservation, 35-40% "
        "off, catalog/billing.yaml).",
    )
    spot_discount: Fraction = Field(
        default=0.6,
        description="Spot price = on-demand x (1 - this); 0 to 1. Default 0.6 (GPU spot 50-65% off, "
        "catalog/billing.yaml).",
    )
    spot_interruptions_per_instance_hour: Annotated[float, Field(ge=0, le=100), NUMBER] = Field(
        default=0.0,
        description="Spot reclaims per instance-hour; each costs one cold start of re-billed time; >= 0. Default 0.",
    )
    growth_per_month: Annotated[float, Field(ge=-1, le=MAX_GROWTH_PER_MONTH), NUMBER] = Field(
        default=0.0,
        description="Traffic growth per month, a fraction (0.05 = 5%); the month/year extrapolation compounds "
        "it. Default 0.",
    )
    attribution: Literal["gpu_time", "tokens"] = Field(
        default="tokens",
        description="How the bill splits over classes: tokens (each class's share of input + output tokens "
        "served) or gpu_time (its share of replica residence time, scheduled_s to finish_s summed over its "
        "requests: the time its requests held batch slots). Default tokens.",
    )
