"""A validation case as a fast prediction: the case's scenario compiled once (model, GPU, memory
plan, request lengths), then evaluated in closed form (fleetsim.steady) for any candidate GPU and
engine profile. The fit calls this hundreds of times per case; the validation runs the simulator."""

from __future__ import annotations

import math
from pathlib import Path

from fleetsim.catalog import load_gpu, load_model
from fleetsim.memory import kv_footprint
from fleetsim.perf import StepModel
from fleetsim.profile import load_engine_profile
from fleetsim.replica_model import memory_plan_of
from fleetsim.scenario import scenario_from_dict
from fleetsim.spec.engine import EngineProfile
from fleetsim.spec.profile import CalibrationProfile
from fleetsim.spec.workload import FixedLength
from fleetsim.steady import full_batch, offline_run, open_loop, request_lengths, single_request
from fleetsim.validation.cases import Case
from fleetsim.validation.runner import scenario_data

ESTIMABLE = ("closed", "offline", "poisson")


class Predictor:
    """Compiled case: `predict(gpu_profile, engine_profile)` gives the metric in SI units."""

    def __init__(self, case: Case, case_dir: Path):
        data, base = scenario_data(case, case_dir)
        spec = scenario_from_dict(data, where=f"case '{case.id}'", base=base)
        self.case, self.spec = case, spec
        self.arch = load_model(spec.model)
        self.gpu = load_gpu(spec.fleet.gpu)
        self.plan = memory_plan_of(spec, self.arch, self.gpu)
        self.footprint = kv_footprint(self.arch, spec.kv_cache, spec.fleet.tp)
        self.lengths = request_lengths(spec.workload, spec.kv_cache.prefix_caching)
        self.engine = load_engine_profile(spec.engine)
        arrival = spec.workload.arrival
        if arrival.kind not in ESTIMABLE:
            raise ValueError(f"case {case.id}: a {arrival.kind} workload has no closed-form steady state")
        self.kind = arrival.kind
        self.operating_tpot_s: float | None = None  # a loaded run's published mean TPOT (set by the fit)
        self.users = getattr(arrival, "users", None)
        c = spec.workload.classes[0]
        self.fixed = isinstance(c.input_tokens, FixedLength) and isinstance(c.output_tokens, FixedLength)
        if self.kind == "closed" and self.users == 1 and not self.fixed:
            raise ValueError(f"case {case.id}: a single user needs fixed lengths for the closed form")
        if self.kind == "poisson" and case.statistic not in ("mean",):
            raise ValueError(f"case {case.id}: the open-loop closed form gives means, not {case.statistic}")

    @property
    def engine_key(self) -> str:
        return self.engine.name if self.engine.engine != "custom" else str(self.spec.engine.profile)

    def step_model(self, gpu_profile: CalibrationProfile, engine_profile: EngineProfile) -> StepModel:
        from fleetsim.profile import with_overrides

        eng = with_overrides(engine_profile, self.spec.engine)
        s = self.spec
        return StepModel(
            self.arch,
            self.gpu,
            gpu_profile,
            eng,
            s.fleet.tp,
            s.weight_dtype,
            s.kv_cache,
            self.footprint,
            streaming=s.engine.streaming,
        )

    def predict(self, gpu_profile: CalibrationProfile, engine_profile: EngineProfile) -> float:
        step = self.step_model(gpu_profile, engine_profile)
        s, m = self.spec, self.case.metric
        sched = s.scheduler
        if self.kind == "closed" and self.users == 1:
            c = s.workload.classes[0]
            ttft, tpot = single_request(
                step,
                self.footprint,
                c.input_tokens.tokens,
                c.output_tokens.tokens,
                sched.max_batched_tokens,
                sched.chunked_prefill,
            )
            return {"ttft_s": ttft, "tpot_s": tpot, "itl_s": tpot}[m]
        replicas = s.fleet.replicas
        if self.kind == "poisson":
            rate = s.workload.arrival.rate_per_s / replicas
            if self.operating_tpot_s is not None and m in ("tpot_s", "ttft_s"):
                # Near saturation TPOT = t0 / (1 - load) swings with a 1% capacity error, so the fit
                # reads a loaded run the well-conditioned way round: the published TPOT and
                # Little's law give the batch the replica ran (rate x E[O] x TPOT sequences
                # decoding); the step model must take that TPOT at that batch.
                batch = rate * self.lengths.mean_output * self.operating_tpot_s
                est = full_batch(
                    step,
                    self.footprint,
                    self.plan,
                    self.lengths,
                    batch,
                    sched.max_running_seqs,
                    sched.max_batched_tokens,
                    sched.chunked_prefill,
                )
                return est.tpot_s if m == "tpot_s" else 0.5 * est.step_s + est.prefill_step_s
            est = open_loop(
                step,
                self.footprint,
                self.plan,
                self.lengths,
                rate,
                sched.max_running_seqs,
                sched.max_batched_tokens,
                sched.chunked_prefill,
            )
        elif self.kind == "offline":
            n = s.workload.arrival.requests / replicas
            est = offline_run(
                step,
                self.footprint,
                self.plan,
                self.lengths,
                n,
                sched.max_running_seqs,
                sched.max_batched_tokens,
                self.fixed,
                sched.chunked_prefill,
            )
        else:
            est = full_batch(
                step,
                self.footprint,
                self.plan,
                self.lengths,
                self.users / replicas,
                sched.max_running_seqs,
                sched.max_batched_tokens,
                sched.chunked_prefill,
            )
        if m == "output_tokens_per_s":
            return est.output_tokens_per_s * replicas
        if m == "gpu_power_w":
            return est.gpu_power_w
        if m == "energy_per_output_token_j":
            return est.energy_per_output_token_j
        if m == "itl_s":
            return est.itl_median_s if self.case.statistic == "p50" else est.tpot_s
        if m == "tpot_s":
            return est.tpot_s
        if m == "ttft_s":
            return est.ttft_s
        return math.nan
