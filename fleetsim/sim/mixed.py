"""A mixed fleet in the simulator: replicas of several groups (GPU type, tp, profile, power limit)
behind one router.

Each GroupReplica is an ordinary Replica given its group's step model, tp, power model, KV pool and
block (in the fleet's reference KV bytes: fleetsim.groups). The capacity_weighted router sends a
request to the replica with the fewest requests in flight per unit of capacity, (outstanding + 1) /
capacity, where a replica's capacity is its group's saturated decode throughput (tokens/s of a full
batch of mean-length sequences: fleetsim.groups.decode_capacity_per_s); ties go to the lowest
index. Under a steady backlog every replica's queue then stays proportional to its capacity, so
each group's share of the requests approaches its share of the fleet's capacity. Any router works
on a mixed fleet; a request whose KV would not fit the picked replica's pool goes to the
least-loaded (by capacity) replica it fits, and is rejected as too_large only when it fits nowhere.
"""

from __future__ import annotations

import pandas as pd
import simpy

from fleetsim.errors import SpecError
from fleetsim.groups import ReplicaGroup, ScaledStepModel
from fleetsim.sim.engine import Engine
from fleetsim.sim.replica import Replica, fleet_meters
from fleetsim.sim.router import LeastOutstanding, make_router
from fleetsim.spec.architecture import Architecture
from fleetsim.spec.engine import EngineProfile
from fleetsim.spec.scenario import ScenarioSpec


class GroupReplica(Replica):
    """A replica of one group: the base replica with its group's step model, tp, pool and block."""

    def __init__(self, env: simpy.Environment, index: int, engine, group: ReplicaGroup):
        super().__init__(env, index, engine, group.pool_ref_bytes)
        step = group.model.step_model
        self.step = step if group.kv_scale == 1.0 else ScaledStepModel(step, group.kv_scale)
        self.power = step.power
        self.tp = group.tp
        self.peak_flops = step.peak_flops
        self.bw = step.bw
        self.frag_bytes = group.frag_ref_bytes
        self.peak_power_w = self.power.idle_w
        self.current_power_w = self.power.idle_w * self.tp
        self.group = group.index


class CapacityWeighted(LeastOutstanding):
    """Fewest in flight per unit of capacity: min (outstanding + 1) / weight, ties lowest index (a
    lazy min-heap, as LeastOutstanding)."""

    def __init__(self, replicas, rng, weights: list[float]):
        self.weights = weights
        super().__init__(replicas, rng)

    def _key(self, r) -> float:
        return (r.outstanding + 1) / self.weights[r.index]


class FittingRouter:
    """Any router over a mixed fleet, with pools of different sizes: a pick whose pool cannot hold
    the request is replaced by the least-loaded (by capacity) replica whose pool can (a scan: only
    requests too large for some group take it)."""

    def __init__(self, inner, engine: MixedEngine):
        self.inner, self.engine = inner, engine
        self.central = inner.central

    def update(self, replica) -> None:
        self.inner.update(replica)

    def pick(self, rid):
        r = self.inner.pick(rid)
        e = self.engine
        need = e.kv_need(rid)
        if r is None or need <= r.pool_bytes:
            return r
        w = e.weights
        fits = [x for x in e.replicas if need <= x.pool_bytes]
        return min(fits, key=lambda x: ((x.outstanding + 1) / w[x.index], x.index))


class MixedEngine(Engine):
    """The engine of a fleet of replica groups: group 0's footprint is the KV reference unit."""

    def __init__(
        self, scenario: ScenarioSpec, arch: Architecture, groups: list[ReplicaGroup], engine_profile: EngineProfile
    ):
        g0 = groups[0]
        super().__init__(g0.scenario, arch, g0.gpu, g0.profile, g0.plan, engine_profile)
        if self.block_cache:
            raise SpecError(
                "fleet.groups: the block prefix cache (kv_cache.prefix_cache blocks, kv_cache.offload or router "
                "prefix_aware) is not modelled on a mixed fleet yet; valid: prefix_cache per_class and another router"
            )
        self.mixed = scenario
        self.groups = groups
        self.group_of = [g.index for g in groups for _ in range(g.replicas)]
        self.weights = [groups[i].capacity_per_s for i in self.group_of]

    def kv_need(self, rid: int) -> float:
        return self.kv_end[rid] + self.class_prefix_bytes[self.req_class[rid]]

    def make_replicas(self, env: simpy.Environment) -> list[Replica]:
        replicas: list[Replica] = [GroupReplica(env, i, self, self.groups[g]) for i, g in enumerate(self.group_of)]
        # Too large only if it fits no group's pool (the engine's dispatch check).
        self.pool_bytes = max(r.pool_bytes for r in replicas)
        self.members = [[r for r in replicas if r.group == g.index] for g in self.groups]  # type: ignore[attr-defined]
        return replicas

    def make_router(self):
        name = self.mixed.fleet.router
        if name == "capacity_weighted":
            router = CapacityWeighted(self.replicas, self.rng, self.weights)
        else:
            router = make_router(name, self.replicas, self.rng)
        if len({r.pool_bytes for r in self.replicas}) > 1:
            return FittingRouter(router, self)
        return router

    def complete(self, rid: int, now: float, replica: int) -> None:
        # The central queue's head goes to a freed replica only if it fits that replica's pool.
        central = self.central
        if central and self.kv_need(central[0]) > self.replicas[replica].pool_bytes:
            self.central = self.new_queue()
            super().complete(rid, now, replica)
            self.central = central
            return
        super().complete(rid, now, replica)

    def _sample_row(self, rows: list) -> None:
        now = self.env.now
        per = [fleet_meters(members, now) for members in self.members]
        pool_total = sum(r.pool_bytes for r in self.replicas)
        held = sum(m[0] for m in per)
        power_w, energy_j, tokens = (sum(m[k] for m in per) for k in (1, 2, 3))
        fleet = (now, self.fleet.running, self.fleet.queued, held / pool_total, power_w, energy_j, tokens)
        rows.append(fleet + tuple(m[2] for m in per) + tuple(m[3] for m in per))

    def timeseries_frame(self, rows: list) -> pd.DataFrame:
        base = super().timeseries_frame([r[:7] for r in rows])
        n = len(self.groups)
        for k, g in enumerate(self.groups):
            base[f"gpu_energy_j.{g.name}"] = [r[7 + k] for r in rows]
            base[f"output_tokens.{g.name}"] = [r[7 + n + k] for r in rows]
        return base

    def _replica_frame(self, now: float) -> pd.DataFrame:
        df = super()._replica_frame(now)
        df["group"] = [self.groups[g].name for g in self.group_of]
        df["gpu"] = [self.groups[g].gpu.name for g in self.group_of]
        return df
