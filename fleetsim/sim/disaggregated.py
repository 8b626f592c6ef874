"""A prefill/decode-disaggregated fleet on one clock: a prefill pool and a decode pool, each an
Engine of its own (its gpu, tp, replicas, memory plan, per-rank KV footprint and step model), and
a front engine that takes the arrivals and keeps the request table.

A request's life: the front admits it (scheduler.max_queue, admission.token_bucket) and routes it
over the prefill pool; a prefill replica runs its prompt (chunked, batched with other prompts) and
samples the first token: SGLang's prefill server computes it and sends it with the KV (in the
transfer's metadata), and the decode server starts from it (Dynamo docs, "SGLang Disaggregated
KV Transfer Flow", components/backends/sglang/docs/sglang-kv-transfer-explainer.md). TTFT counts
that moment by default (disaggregation.ttft_at: prefill, the engine-side figure); with ttft_at:
handoff it counts when the KV and the token reach the decode replica, which streams every token to
the client there (the client-side figure, transfer included). The prompt's KV stays held
on the prefill replica while it moves over the link (fleetsim.kv_transfer.kv_transfer: the busier
side's bytes over efficiency x bandwidth, plus latency; layer-pipelined, only what outlasts the
prefill). Transfers of one prefill replica share its NICs: they queue, first come first served
(one ends no earlier than the one before it plus its own time); with DP attention each DP rank's
NIC is its own queue (the transfer goes to the one free first). When the transfer ends the
prefill replica frees the KV and the request goes to a decode replica (routed over the decode
pool), which admits it when its whole KV fits (it arrives whole, so no on-demand first chunk),
runs one iteration over the last token to produce the second, and decodes the rest. A decode
preemption recomputes the generated tokens there (the prompt's KV is taken as kept). (SGLang
reserves the decode side's KV before the prefill starts, so a full decode pool holds prompts back
at the prefill; here they are prefilled and wait for decode memory after the transfer.)
"""

from __future__ import annotations

from array import array
from typing import cast

import numpy as np
import pandas as pd
import simpy

from fleetsim.kv_transfer import KvTransfer, Link, kv_transfer, pipelined_exposed_s
from fleetsim.replica_model import ReplicaModel
from fleetsim.sim.engine import DONE, Engine
from fleetsim.sim.replica import Replica, fleet_meters
from fleetsim.sim.router import make_router


class PrefillReplica(Replica):
    """A prefill replica: a prompt's KV stays held while it is transferred; a head request that
    does not fit because of those waits for a transfer to end rather than being rejected."""

    def __init__(self, env, index, engine, pool_bytes):
        super().__init__(env, index, engine, pool_bytes)
        self.transfers = 0  # transfers in flight from this replica
        # When each NIC group finishes the transfers queued on it: one group (every rank sends its
        # share of each request), or one per attention-DP rank (a request lives on one rank).
        self.nic_free_s = [0.0] * engine.footprint.dp
        self.room: simpy.Event | None = None

    def hold(self, bytes_: float) -> None:
        self.mem_a += bytes_
        self.transfers += 1

    def release(self, bytes_: float, now: float) -> None:
        """A transfer ended: free its KV; account the idle time up to now at the old level first."""
        if self.sleeping:
            self._account_idle(now - self._idle_since)
            self._idle_since = now
        elif self.room is not None:
            gap = now - self._seg_start
            self.energy_j += gap * self.current_power_w
            self.kv_byte_s += gap * self.held_bytes()
            self._seg_start = now
        self.mem_a -= bytes_
        self.transfers -= 1
        if self.room is not None:
            room, self.room = self.room, None
            room.succeed()

    def _no_room(self):
        if not self.transfers:
            yield from super()._no_room()
            return
        self.room = self.env.event()
        self.current_power_w = self.power.idle_w * self.tp
        self._seg_start = self.env.now
        yield self.room


class DecodeReplica(Replica):
    def _admit_need(self, rid: int) -> float:
        """The whole KV of the prompt and the tokens generated so far: it arrives in one piece."""
        e = self.engine
        return e.kv_start[rid] + e.kv_growth[rid] * e.generated[rid] + self.frag_bytes


class PoolEngine(Engine):
    """One pool: its replicas, router and central queue on the front's clock, its own per-request
    KV columns (its footprint), and callbacks that report to the front."""

    def __init__(self, front: DisaggregatedEngine, role: str, scenario, arch, gpu, profile, engine_profile):
        super().__init__(scenario, arch, gpu, profile, None, engine_profile)
        self.front, self.role = front, role
        if role == "prefill":
            # A prefill replica holds a prompt, never its output: no reservation up to max tokens
            # (TensorRT-LLM's GUARANTEED_NO_EVICT applies where the output is generated).
            self.reserve_full = False

    @property
    def itl(self):  # type: ignore[override]  # one histogram for the fleet: the front's
        return self.front.itl

    @property
    def model(self) -> ReplicaModel:
        return ReplicaModel(self.plan, self.footprint, self.step_model)

    def start(self, env: simpy.Environment) -> None:
        self.env = env
        self.fleet = self.front.fleet
        self.pool_bytes = float(self.plan.kv_pool_bytes_per_gpu)
        kind = PrefillReplica if self.role == "prefill" else DecodeReplica
        self.replicas = [kind(env, i, self, self.pool_bytes) for i in range(self.scenario.fleet.replicas)]
        self.router = make_router(self.scenario.fleet.router, self.replicas, self.rng)
        self.central = self.new_queue()

    def hand(self, rid: int, replica) -> None:
        """Queue a request at `replica` (None: the central queue; every replica is full)."""
        self.pending += 1
        self.enqueue_at(rid, replica)

    def mark_scheduled(self, rid: int, now: float) -> None:
        super().mark_scheduled(rid, now)
        if self.role == "prefill":
            self.front.mark_scheduled(rid, now)

    def mark_first_token(self, rid: int, now: float) -> None:
        super().mark_first_token(rid, now)
        if self.front.pd.ttft_at == "prefill":
            self.front.mark_first_token(rid, now)

    def preempted(self, rid: int) -> None:
        super().preempted(rid)
        self.front.preempted(rid)

    def complete(self, rid: int, now: float, replica: int) -> None:
        if self.role == "prefill":
            r = cast(PrefillReplica, self.replicas[replica])
            r.hold(self.held_base[rid] + r.frag_bytes)  # held until the transfer ends
        super().complete(rid, now, replica)
        if self.role == "prefill":
            self.front.prefilled(rid, now, replica)
        else:
            self.front.finish(rid, now)

    def reject(self, rid: int, reason: str = "too_large") -> None:
        super().reject(rid, reason)
        self.front.reject(rid, reason)


class DisaggregatedEngine(Engine):
    """The front: arrivals, admission, the request table; its replicas are both pools'."""

    def __init__(self, scenario, arch, gpus: dict, profiles: dict, engine_profile, link: Link):
        """gpus, profiles: each pool's ({"prefill": ..., "decode": ...})."""
        from fleetsim.disaggregation import pool_scenario

        self.pd = scenario.disaggregation
        decode = pool_scenario(scenario, "decode")
        super().__init__(decode, arch, gpus["decode"], profiles["decode"], None, engine_profile)
        self.prefill = PoolEngine(
            self,
            "prefill",
            pool_scenario(scenario, "prefill"),
            arch,
            gpus["prefill"],
            profiles["prefill"],
            engine_profile,
        )
        self.decode = PoolEngine(self, "decode", decode, arch, gpus["decode"], profiles["decode"], engine_profile)
        self.step_model = self.decode.step_model
        self.link = link
        self._transfers: dict[int, KvTransfer] = {}
        self.transfer_s: array[float] = array("d")
        self.transfer_bytes: array[float] = array("d")

    def transfer_of(self, prompt_tokens: int) -> KvTransfer:
        x = self._transfers.get(prompt_tokens)
        if x is None:
            x = kv_transfer(
                self.arch,
                prompt_tokens,
                self.link,
                kv=self.scenario.kv_cache,
                prefill_tp=self.pd.prefill.tp,
                decode_tp=self.pd.decode.tp,
                prefill_dp=self.prefill.footprint.dp,
                decode_dp=self.decode.footprint.dp,
            )
            self._transfers[prompt_tokens] = x
        return x

    # ------------------------------------------------------------------ fleet and requests
    def make_replicas(self, env: simpy.Environment) -> list[Replica]:
        """Both pools' replicas, prefill first (each pool keeps its own list, router and queue)."""
        self.prefill.start(env)
        self.decode.start(env)
        both = self.prefill.replicas + self.decode.replicas
        # The time series' KV fraction divides by pool_bytes x replicas: the pools' mean.
        total = sum(p.pool_bytes * len(p.replicas) for p in (self.prefill, self.decode))
        self.pool_bytes = total / len(both)
        return both

    def make_router(self):
        return self.prefill.router  # arrivals go to the prefill pool (dispatch picks there)

    def _add_requests(self, arrival_s, inputs, outputs, classes, prefix, session_id=None, turn=None) -> int:
        first = super()._add_requests(arrival_s, inputs, outputs, classes, prefix, session_id, turn)
        self.prefill._add_requests(arrival_s, inputs, np.ones(len(self.arrival_s) - first, np.int64), classes, prefix)
        self.decode._add_requests(arrival_s, inputs, outputs, classes, prefix)
        n = len(self.arrival_s) - first
        nan = float("nan")
        self.transfer_s.extend(array("d", [nan]) * n)
        self.transfer_bytes.extend(array("d", [nan]) * n)
        return first

    def dispatch(self, rid: int) -> None:
        self.pending += 1
        pre, dec = self.prefill, self.decode
        total = self.input_tokens[rid] + self.output_tokens[rid]
        if (
            (self.max_len is not None and total > self.max_len)
            or pre.kv_end[rid] > pre.pool_bytes
            or dec.kv_end[rid] > dec.pool_bytes
        ):
            self.reject(rid)
            return
        replica = pre.router.pick(rid)
        queue = pre.central if replica is None else replica.waiting
        refused = self.admission.check(self.env.now, len(queue))
        if refused is not None:
            self.reject(rid, refused)
            return
        pre.hand(rid, replica)

    # ------------------------------------------------------------------ from the pools
    def prefilled(self, rid: int, now: float, replica: int) -> None:
        """The first token is out: start the KV transfer (a one-token output is done here)."""
        pre = self.prefill
        r = cast(PrefillReplica, pre.replicas[replica])
        held = pre.held_base[rid] + r.frag_bytes
        if self.output_tokens[rid] <= 1:
            r.release(held, now)
            self.mark_first_token(rid, now)  # the only token: out at once (no transfer)
            self.finish(rid, now)
            return
        x = self.transfer_of(self.input_tokens[rid])
        exposed = x.time_s
        if self.pd.layer_pipelined:
            exposed = pipelined_exposed_s(x.time_s, self.link, self.arch.num_layers, now - pre.scheduled_s[rid])
        free = r.nic_free_s
        lane = free.index(min(free))  # the NIC group free first (the lowest index on a tie)
        end = max(now + exposed, free[lane] + x.time_s)
        free[lane] = end
        self.transfer_s[rid] = end - now
        self.transfer_bytes[rid] = x.decode_replica_bytes
        self.env.timeout(end - now).callbacks.append(lambda _ev: self._handoff(rid, r, held))

    def _handoff(self, rid: int, r: PrefillReplica, held: float) -> None:
        r.release(held, self.env.now)
        if self.pd.ttft_at == "handoff":
            self.mark_first_token(rid, self.env.now)
        dec = self.decode
        dec.generated[rid] = 1  # the prefill's first token
        dec.hit_tokens[rid] = dec.input_tokens[rid]  # the prompt's KV is here: only the last token runs
        dec.hand(rid, dec.router.pick(rid))

    def finish(self, rid: int, now: float) -> None:
        self.finish_s[rid] = now
        self.status[rid] = DONE
        self.pending -= 1
        self._after(rid)

    # ------------------------------------------------------------------ meters and frames
    POOL_METERS = ("gpu_energy_j.prefill", "gpu_energy_j.decode", "output_tokens.prefill", "output_tokens.decode")

    def _sample_row(self, rows: list) -> None:
        """The fleet's meters, then each pool's GPU energy and output tokens (the columns a mixed
        fleet's groups have: POOL_METERS)."""
        now = self.env.now
        pre = fleet_meters(self.prefill.replicas, now)
        dec = fleet_meters(self.decode.replicas, now)
        held, power_w, energy_j, tokens = (pre[k] + dec[k] for k in range(4))
        kv_fraction = held / (self.pool_bytes * len(self.replicas))
        fleet = (now, self.fleet.running, self.fleet.queued, kv_fraction, power_w, energy_j, tokens)
        rows.append(fleet + (pre[2], dec[2], pre[3], dec[3]))

    def timeseries_frame(self, rows: list) -> pd.DataFrame:
        df = super().timeseries_frame([r[:7] for r in rows])
        for k, name in enumerate(self.POOL_METERS):
            df[name] = [r[7 + k] for r in rows]
        return df

    def _request_frame(self) -> pd.DataFrame:
        df = super()._request_frame()
        prefill_replica = np.array(self.prefill.replica_of, dtype=np.int32)
        decode_replica = np.array(self.decode.replica_of, dtype=np.int32)
        # The row of the replica table (prefill replicas first): where the request finished.
        df["replica"] = np.where(decode_replica >= 0, len(self.prefill.replicas) + decode_replica, prefill_replica)
        df["prefill_replica"] = prefill_replica
        df["decode_replica"] = decode_replica
        df["transfer_s"] = np.array(self.transfer_s)
        df["transfer_bytes"] = np.array(self.transfer_bytes)
        prefill_end = np.array(self.prefill.first_token_s)
        df["prefill_end_s"] = prefill_end
        df["handoff_s"] = np.array(self.decode.scheduled_s) - prefill_end
        return df

    def _replica_frame(self, now: float) -> pd.DataFrame:
        df = super()._replica_frame(now)
        pools = ["prefill"] * len(self.prefill.replicas) + ["decode"] * len(self.decode.replicas)
        df.insert(1, "pool", pools)
        df["group"] = pools  # a mixed fleet's group column: the pools are the groups
        df["gpu"] = [self.prefill.gpu.name] * len(self.prefill.replicas) + [self.decode.gpu.name] * len(
            self.decode.replicas
        )
        return df
