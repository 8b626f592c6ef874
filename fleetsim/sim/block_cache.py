"""A replica whose prefix cache holds memory: a block cache (fleetsim.prefix_cache.PrefixCache)
in the replica's KV pool, with an optional host (and disk) tier, and the prefix-aware router
that reads it.

Opt-in (checked once, at build): ``kv_cache.prefix_cache: blocks``, or ``kv_cache.offload`` set,
or ``fleet.router: prefix_aware``. Off, the simulator keeps its per-class prefix model, unchanged.

Memory: the replica's byte accounting stays the authority. A request's own bytes exclude its
prompt's full blocks (the engine sizes them so); those blocks are in the cache, counted once
however many requests share them, and the cache's unreferenced blocks stay counted (held memory)
until evicted. ``prefix_bytes`` = cache blocks on the GPU x block bytes.

- Admission holds every full block of the prompt: cached leading blocks are hits (no prefill
  compute; host-tier blocks are reloaded when that beats recomputing them, the reload time added
  to the next prefill iteration, a blocking load before the forward), the rest allocated. It
  admits when the request's own first bytes plus its new blocks fit in the free pool plus the
  evictable cached blocks outside its chain; LRU blocks are evicted to make room before anyone
  is preempted.
- A finished request's computed KV (prompt + output - 1 tokens: the last token is sampled, never
  fed back) stays cached in full blocks, its chain's tail first in line for eviction. A request
  preempted keeps its computed blocks cached (vLLM frees them into the prefix cache); a prompt
  block whose prefill had not run is freed.
- A decode run that would outgrow the free pool evicts LRU blocks for its steps at its start
  (once a run, not per iteration); preemption comes only when nothing is evictable.
- Evicted blocks move to the host tier when kv_cache.offload is set (its link from
  fleetsim/catalog/links.yaml), else are dropped.

Simplifications: blocks count as cached from admission, so a request arriving during another's
prefill may hit blocks still being computed; a preempted request's re-admission holds only its
prompt's blocks (its generated blocks hit while still cached). Cache lookups happen once per
admission and once per finish, never per decode iteration.
"""

from __future__ import annotations

import math
import sys

from fleetsim.errors import SpecError
from fleetsim.prefix_cache import CacheFull, PrefixAwareRouter, block_hashes, replica_prefix_cache
from fleetsim.sim.replica import Replica
from fleetsim.spec.topology import RoutingSpec

__all__ = ["BlockCacheReplica", "BlockChains", "PrefixAware", "block_cache_on", "prefix_cache_summary"]


def block_cache_on(scenario, engine_profile, plan) -> bool:
    """Whether the scenario runs the block cache (see the module note); SpecError where it is not
    modelled."""
    kv = scenario.kv_cache
    on = kv.prefix_cache == "blocks" or (
        kv.prefix_cache is None and (kv.offload is not None or scenario.fleet.router == "prefix_aware")
    )
    if not on:
        return False
    if plan.block_bytes_per_gpu <= 0 or any(t.fixed_bytes_per_rank for t in plan.footprint.terms):
        # An SSM layer's state is one fixed-size record per sequence, not blocks a prefix can share.
        raise SpecError(
            f"kv_cache.prefix_cache: the block cache needs a model whose KV is all per-token blocks; "
            f"'{scenario.model}' has SSM state; valid: prefix_cache per_class (and no offload or prefix_aware router)"
        )
    if engine_profile.batching.kv_admission == "reserve_full":
        raise SpecError(
            f"kv_cache.prefix_cache: the block cache is not modelled with engine '{scenario.engine.kind}' "
            "(reserve_full admission); valid: an on-demand engine (vllm, sglang), or prefix_cache per_class"
        )
    return True


class BlockChains:
    """Each request's prompt block chain, computed once (the router and the admission both read it)
    and dropped when the request finishes."""

    def __init__(self, engine):
        self.engine = engine
        self.block_tokens = engine.block_tokens
        self._prompt: dict[int, list[int]] = {}

    def chain(self, rid: int, tokens: int) -> list[int]:
        e = self.engine
        return block_hashes(
            tokens,
            self.block_tokens,
            shared_prefix_tokens=e.prefix_tokens[rid],
            class_index=e.req_class[rid],
            session_id=e.session_id[rid],
            request_id=rid,
        )

    def prompt(self, rid: int) -> list[int]:
        c = self._prompt.get(rid)
        if c is None:
            c = self._prompt[rid] = self.chain(rid, self.engine.input_tokens[rid])
        return c

    def forget(self, rid: int) -> None:
        self._prompt.pop(rid, None)


class BlockCacheReplica(Replica):
    def __init__(self, env, index: int, engine, pool_bytes: float):
        super().__init__(env, index, engine, pool_bytes)
        self.cache = replica_prefix_cache(engine.plan, engine.step_model, engine.scenario.kv_cache.offload)
        # Eviction is sized by the replica's bytes before each allocation (capacity set then).
        self.cache.capacity_blocks = sys.maxsize
        self.block_bytes = float(engine.plan.block_bytes_per_gpu)
        self.chains: BlockChains = engine.block_chains
        self.holding: dict[int, list[int]] = {}  # rid -> the prompt blocks it holds
        self.lookup_prompt_tokens = 0
        self.gpu_hit_tokens = 0
        self.host_hit_tokens = 0
        self.reload_s = 0.0

    # ------------------------------------------------------------------ sizing
    def _own_need(self, rid: int) -> float:
        e = self.engine
        return e.kv_start[rid] + e.kv_growth[rid] * e.generated[rid] + self.frag_bytes

    def _capacity_blocks(self, extra_bytes: float) -> int:
        """GPU blocks the cache may use: the pool less every sequence's own bytes and `extra_bytes`."""
        own = self.mem_a + self.mem_g * self.it
        return max(int((self.pool_bytes - own - extra_bytes) // self.block_bytes), 0)

    def _sync_bytes(self) -> None:
        self.prefix_bytes = self.cache.gpu_blocks_used() * self.block_bytes

    def can_admit(self, rid: int) -> bool:
        if len(self.running) + len(self.prefilling) >= self.max_running_seqs:
            return False
        new, evictable = self.cache.room_for(self.chains.prompt(rid))
        room = self._capacity_blocks(self._own_need(rid)) - self.cache.gpu_blocks_used() + evictable
        return new <= room

    # ------------------------------------------------------------------ admission
    def _cached_tokens(self, rid: int) -> int:
        e, b = self.engine, self.chains.block_tokens
        chain = self.chains.prompt(rid)
        self.cache.capacity_blocks = self._capacity_blocks(self._own_need(rid))
        found = self.cache.acquire(chain)  # can_admit made sure it fits
        self.cache.capacity_blocks = sys.maxsize
        self.holding[rid] = chain
        self._sync_bytes()
        tokens = e.input_tokens[rid] + e.generated[rid]
        hit_blocks = found.gpu_hit_blocks + found.reloaded_blocks
        if e.generated[rid] and hit_blocks == len(chain):
            # Re-admitted after preemption: its generated blocks hit while they are still cached.
            hit_blocks = self.cache.cached_prefix_blocks(self.chains.chain(rid, tokens))
        cached = min(hit_blocks * b, tokens - 1)
        if found.reload_s:
            self.reload_due_s += found.reload_s
            self.reload_s += found.reload_s
        if e.scheduled_s[rid] != e.scheduled_s[rid]:  # NaN: a first admission (counters, the request's column)
            self.lookup_prompt_tokens += e.input_tokens[rid]
            self.host_hit_tokens += min(found.reloaded_blocks * b, cached)
            self.gpu_hit_tokens += cached - min(found.reloaded_blocks * b, cached)
            e.hit_tokens[rid] = cached
        return cached

    # ------------------------------------------------------------------ release
    def _retain(self, rid: int, kv_tokens: int) -> None:
        """The request lets go of its blocks; the full blocks of its `kv_tokens` computed tokens
        stay cached (an answer's blocks too, when the pool has room), the rest are freed."""
        held = self.holding.pop(rid, None)
        if held is None:
            return
        cache = self.cache
        keep = kv_tokens // self.chains.block_tokens
        if keep < len(held):
            cache.release(held[:keep])
            cache.discard(held[keep:])
        elif keep > len(held):
            full = self.chains.chain(rid, kv_tokens)
            cache.capacity_blocks = self._capacity_blocks(0.0)
            try:
                cache.acquire(full)
                cache.release(full)
            except CacheFull:
                pass  # no room for the answer's blocks: only the prompt's stay
            cache.capacity_blocks = sys.maxsize
            cache.release(held)
        else:
            cache.release(held)
        self._sync_bytes()

    def _release(self, rid: int, start_it: int, g: float) -> None:
        super()._release(rid, start_it, g)
        e = self.engine
        if e.generated[rid] == e.output_tokens[rid]:  # finished (a preemption retains in _preempt)
            self._retain(rid, e.input_tokens[rid] + e.output_tokens[rid] - 1)
            self.chains.forget(rid)

    def _start_decode(self, rid: int, now: float) -> None:
        e = self.engine
        done = e.output_tokens[rid] - e.generated[rid] <= 1  # its first token is its last
        super()._start_decode(rid, now)
        if done:
            self._retain(rid, e.input_tokens[rid] + e.output_tokens[rid] - 1)
            self.chains.forget(rid)

    # ------------------------------------------------------------------ making room
    def _evict_for(self, need_bytes: float) -> bool:
        """Evict LRU cached blocks until `need_bytes` are free (or none is left); whether any went."""
        short = need_bytes - self.free_bytes()
        if short <= 0 or not self.cache.evictable_blocks():
            return False
        went = self.cache.evict(max(math.ceil(short / self.block_bytes), 1))
        self._sync_bytes()
        return went > 0

    def _decode_run(self):
        if self.mem_g > 0 and self.heap:
            self._evict_for(self.mem_g * (self.heap[0][0] - self.it))
        yield from super()._decode_run()

    def _preempt(self, now: float) -> None:
        """Out of room: evict cached blocks first; preempt a sequence only when none is evictable."""
        if self._evict_for(max(self.mem_g, self.block_bytes)):
            return
        e = self.engine
        rid = self._victim()
        prefilling = self.prefilling.get(rid)
        computed = prefilling[1] if prefilling is not None else 0
        super()._preempt(now)
        if prefilling is None:
            computed = e.input_tokens[rid] + e.generated[rid] - 1
        self._retain(rid, computed)

    def active_blocks(self) -> float:
        """KV blocks the running sequences use: their own bytes, and the cached blocks they hold."""
        own = (self.mem_a + self.mem_g * self.it) / self.block_bytes
        return own + self.cache.gpu_blocks_used() - self.cache.evictable_blocks()

    def cache_counters(self) -> dict:
        c = self.cache
        return {
            "prefix_lookup_tokens": self.lookup_prompt_tokens,
            "prefix_gpu_hit_tokens": self.gpu_hit_tokens,
            "prefix_host_hit_tokens": self.host_hit_tokens,
            "prefix_evicted_blocks": c.evicted_blocks,
            "prefix_offloaded_bytes": c.offloaded_blocks * self.block_bytes * self.tp,
            "prefix_reload_s": self.reload_s,
            "prefix_cached_blocks_at_end": c.gpu_blocks_used(),
        }


class PrefixAware:
    """fleet.router prefix_aware: session affinity, then llm-d's weighted score of the cached
    share of the prompt's blocks (read from each replica's cache, no side effects) and load
    (outstanding requests), or Dynamo's KV cost (fleet.routing.scorer); see
    fleetsim.prefix_cache.PrefixAwareRouter."""

    central = False

    def __init__(self, replicas, rng):
        self.replicas = replicas
        engine = replicas[0].engine
        self.chains = engine.block_chains
        spec = engine.scenario.fleet.routing or RoutingSpec()
        self.router = PrefixAwareRouter([r.cache for r in replicas], spec, scorer=spec.scorer)
        self.dynamo = spec.scorer == "dynamo"

    def update(self, replica) -> None:
        """Loads are read at each pick."""

    def pick(self, rid: int):
        e = self.replicas[0].engine
        # llm-d's load scorer reads requests in flight; Dynamo's cost, KV blocks in use.
        loads = [r.active_blocks() if self.dynamo else float(r.outstanding) for r in self.replicas]
        i = self.router.route(self.chains.prompt(rid), e.input_tokens[rid], loads, e.session_id[rid])
        return self.replicas[i]


def prefix_cache_summary(replicas) -> dict | None:
    """The run's `prefix_cache` block from the replica table (None without the block cache)."""
    if "prefix_lookup_tokens" not in replicas:
        return None
    lookup = int(replicas["prefix_lookup_tokens"].sum())
    gpu = int(replicas["prefix_gpu_hit_tokens"].sum())
    host = int(replicas["prefix_host_hit_tokens"].sum())
    return {
        "model": "blocks",
        "prompt_tokens": lookup,
        "hit_tokens": gpu + host,
        "hit_rate": (gpu + host) / lookup if lookup else 0.0,
        "gpu_hit_tokens": gpu,
        "host_hit_tokens": host,
        "evicted_blocks": int(replicas["prefix_evicted_blocks"].sum()),
        "offloaded_bytes": float(replicas["prefix_offloaded_bytes"].sum()),
        "reload_s": float(replicas["prefix_reload_s"].sum()),
    }
