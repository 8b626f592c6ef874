"""A block-level prefix cache that holds memory, a host (and disk) tier below it, and the
prefix-aware router that reads it. Pure: no simpy; the simulator's replica will own one cache.

Blocks (vLLM's automatic prefix caching): a sequence's tokens in blocks of `block_tokens`; only
full blocks are cached, each named by a hash chained over every block before it, so a block is
shared exactly when the whole prefix up to it is. fleetsim has no token text, so a block's
content is named by where it comes from: the class's shared prefix (system prompt) for blocks
inside it, else the session (a conversation is append-only: turn j's first blocks are turn
j-1's prompt and answer), else the request alone.

A request holds its blocks while it runs (reference counts); a finished request's blocks stay
cached and join the LRU list, the tail of its chain first (vLLM frees blocks in reverse, so a
prefix's last blocks are evicted before its first). When a block is needed and none is free,
the least recently used unreferenced block is evicted: into the next tier (host memory, then
disk) when there is one, else dropped. A lookup takes the leading run of the chain found in any
tier; blocks found below the GPU are reloaded when their bytes / tier bandwidth take less than
recomputing them, else the run stops there and the rest is recomputed (as LMCache and vLLM's
offloading connector choose). At least one prompt token is always computed.

Routing: ``llm_d_score`` (llm-d's inference scheduler: weighted scorers in [0, 1], the precise
prefix-cache scorer = cached prompt blocks / prompt blocks, and a load scorer) and
``dynamo_kv_cost`` (NVIDIA Dynamo's KV router: cost = overlap_score_weight x potential prefill
blocks + potential decode blocks, where prefill blocks = (input tokens - overlap blocks x block
size) / block size and decode blocks = the worker's active blocks + the request's; the lowest
cost wins at temperature 0). Session affinity pins a session to the replica of its first turn.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from fleetsim.spec.topology import RoutingSpec

__all__ = [
    "CacheFull",
    "CacheTier",
    "Lookup",
    "PrefixAwareRouter",
    "PrefixCache",
    "block_hashes",
    "dynamo_kv_cost",
    "llm_d_score",
    "replay",
    "replica_prefix_cache",
]

_CLASS, _SESSION, _REQUEST = 0, 1, 2


class CacheFull(RuntimeError):
    """Every GPU block is held by a running request (the simulator preempts on this)."""


def block_hashes(
    tokens: int,
    block_tokens: int,
    *,
    shared_prefix_tokens: int = 0,
    class_index: int = 0,
    session_id: int = -1,
    request_id: int = 0,
) -> list[int]:
    """Chained ids of the full blocks of a sequence of `tokens` tokens (see the module note)."""
    out = []
    parent = 0
    for i in range(tokens // block_tokens):
        if (i + 1) * block_tokens <= shared_prefix_tokens:
            content = (_CLASS, class_index, i)
        elif session_id >= 0:
            content = (_SESSION, session_id, i)
        else:
            content = (_REQUEST, request_id, i)
        parent = hash((parent, *content))
        out.append(parent)
    return out


@dataclass(frozen=True)
class CacheTier:
    """A tier below the GPU: its capacity in blocks and the bandwidth blocks reload at."""

    name: str
    capacity_blocks: int
    bandwidth_bytes_per_s: float
    latency_s: float = 0.0


@dataclass(frozen=True)
class Lookup:
    """What a request found: GPU blocks reused, blocks reloaded from a lower tier, and blocks to compute."""

    gpu_hit_blocks: int
    reloaded_blocks: int
    computed_blocks: int
    reload_s: float


@dataclass
class PrefixCache:
    """A replica's paged KV blocks used as a prefix cache, with optional lower tiers.
    `recompute_s(tokens, context_tokens)` prices recomputing tokens after a context (for the
    reload-or-recompute choice); None: reloading always wins when a tier holds the blocks."""

    capacity_blocks: int
    block_tokens: int = 16
    block_bytes: float = 0.0
    tiers: Sequence[CacheTier] = ()
    recompute_s: Callable[[int, int], float] | None = None
    _tier_of: dict[int, int] = field(default_factory=dict, repr=False)  # 0 = GPU, i = tiers[i - 1]
    _refs: dict[int, int] = field(default_factory=dict, repr=False)
    _lru: list[OrderedDict] = field(default_factory=list, repr=False)  # per tier; GPU: unreferenced only
    _used: list[int] = field(default_factory=list, repr=False)
    evicted_blocks: int = 0  # GPU blocks evicted (to a lower tier or dropped)
    offloaded_blocks: int = 0  # of them, moved into the first lower tier

    def __post_init__(self):
        self._lru = [OrderedDict() for _ in range(len(self.tiers) + 1)]
        self._used = [0] * (len(self.tiers) + 1)

    # ------------------------------------------------------------------ queries
    def gpu_blocks_used(self) -> int:
        return self._used[0]

    def tier_blocks_used(self, tier: int) -> int:
        return self._used[tier]

    def cached_prefix_blocks(self, hashes: Sequence[int]) -> int:
        """Leading blocks of the chain held on the GPU (what a router's overlap score reads)."""
        n = 0
        for h in hashes:
            if self._tier_of.get(h) != 0:
                break
            n += 1
        return n

    def evictable_blocks(self) -> int:
        """Cached GPU blocks no running request holds (what eviction may take)."""
        return len(self._lru[0])

    def room_for(self, hashes: Sequence[int]) -> tuple[int, int]:
        """(new GPU blocks holding `hashes` would allocate, evictable blocks outside the chain):
        no side effects (an admission check)."""
        lru = self._lru[0]
        new = own_lru = 0
        for h in hashes:
            if self._tier_of.get(h) == 0:
                own_lru += h in lru
            else:
                new += 1
        return new, len(lru) - own_lru

    def evict(self, blocks: int) -> int:
        """Evict up to `blocks` least recently used unreferenced GPU blocks (into the next tier
        when there is one); returns how many went."""
        n = min(blocks, len(self._lru[0]))
        for _ in range(n):
            self._evict_one()
        return n

    def discard(self, hashes: Sequence[int]) -> None:
        """Let go of held blocks whose KV was never computed (a request preempted mid-prefill):
        a block no one else holds is freed, not cached."""
        for h in hashes:
            r = self._refs[h] - 1
            if r:
                self._refs[h] = r
            else:
                del self._refs[h]
                self._drop(h, 0)

    # ------------------------------------------------------------------ holding blocks
    def acquire(self, hashes: Sequence[int], prompt_blocks: int | None = None) -> Lookup:
        """Hold every block of `hashes` on the GPU for a running request: reuse the cached leading
        run (reloading lower-tier blocks when that beats recomputing), allocate the rest.
        `prompt_blocks` of them are the prompt (the lookup's scope); default all."""
        scope = len(hashes) if prompt_blocks is None else prompt_blocks
        run = 0
        while run < scope and hashes[run] in self._tier_of:
            run += 1
        reload_s, reload_blocks = 0.0, []
        for i in range(run):
            tier = self._tier_of[hashes[i]]
            if tier:
                reload_blocks.append(i)
                reload_s += self.block_bytes / self.tiers[tier - 1].bandwidth_bytes_per_s
        if reload_blocks:
            reload_s += max(self.tiers[self._tier_of[hashes[i]] - 1].latency_s for i in reload_blocks)
            first = reload_blocks[0]
            tokens = (run - first) * self.block_tokens
            if self.recompute_s is not None and reload_s >= self.recompute_s(tokens, first * self.block_tokens):
                run, reload_s, reload_blocks = first, 0.0, []
        gpu_hits = sum(1 for i in range(run) if self._tier_of[hashes[i]] == 0)
        on_gpu = [h for h in hashes if self._tier_of.get(h) == 0]
        evictable = len(self._lru[0]) - sum(1 for h in on_gpu if h in self._lru[0])
        needed = len(hashes) - len(on_gpu)
        if needed > self.capacity_blocks - self._used[0] + evictable:
            raise CacheFull(
                f"{needed} new blocks needed, {self.capacity_blocks - self._used[0] + evictable} free or evictable "
                f"of {self.capacity_blocks}: the rest are held by running requests"
            )
        # Every block already on the GPU is held first (so no allocation below can evict it);
        # then lower-tier copies come up (reloaded inside the run, recomputed after it) and
        # missing blocks are allocated.
        for h in on_gpu:
            self._hold(h)
        for h in hashes:
            where = self._tier_of.get(h)
            if where == 0:
                continue
            if where is not None:
                self._drop(h, where)
            self._allocate(h)
        return Lookup(gpu_hits, len(reload_blocks), len(hashes) - run, reload_s)

    def release(self, hashes: Sequence[int]) -> None:
        """The request is done with its blocks; they stay cached, the chain's tail first in line
        for eviction."""
        for h in reversed(hashes):
            r = self._refs[h] - 1
            if r:
                self._refs[h] = r
            else:
                del self._refs[h]
                self._lru[0][h] = None

    def _hold(self, h: int) -> None:
        if h not in self._refs:
            self._lru[0].pop(h, None)
            self._refs[h] = 0
        self._refs[h] += 1

    def _drop(self, h: int, tier: int) -> None:
        del self._tier_of[h]
        self._lru[tier].pop(h, None)
        self._used[tier] -= 1

    def _evict_one(self) -> None:
        victim, _ = self._lru[0].popitem(last=False)
        self._used[0] -= 1
        self.evicted_blocks += 1
        self._demote(victim, 1)

    def _allocate(self, h: int) -> None:
        # `while`: a caller may lower capacity_blocks below what is used (the simulator sizes it
        # to the pool left by running sequences); with a fixed capacity this runs at most once.
        while self._used[0] >= self.capacity_blocks:
            if not self._lru[0]:
                raise CacheFull(f"all {self.capacity_blocks} GPU blocks are held by running requests")
            self._evict_one()
        self._tier_of[h] = 0
        self._used[0] += 1
        self._refs[h] = 1

    def _demote(self, h: int, tier: int) -> None:
        """Move an evicted block into `tier` (making room there the same way), or drop it."""
        if tier > len(self.tiers) or self.tiers[tier - 1].capacity_blocks <= 0:
            self._tier_of.pop(h, None)
            return
        if self._used[tier] >= self.tiers[tier - 1].capacity_blocks:
            victim, _ = self._lru[tier].popitem(last=False)
            self._used[tier] -= 1
            self._demote(victim, tier + 1)
        if tier == 1:
            self.offloaded_blocks += 1
        self._tier_of[h] = tier
        self._lru[tier][h] = None
        self._used[tier] += 1


# --------------------------------------------------------------------------- routing
def llm_d_score(cached_blocks: int, prompt_blocks: int, load: float, max_load: float, spec: RoutingSpec) -> float:
    """cache_weight x cached / prompt blocks + load_weight x (1 - load / max load): llm-d's
    weighted sum of a prefix-cache scorer and a load scorer, each in [0, 1]; the highest wins."""
    cache = cached_blocks / prompt_blocks if prompt_blocks else 0.0
    idle = 1.0 - (load / max_load if max_load > 0 else 0.0)
    return spec.cache_weight * cache + spec.load_weight * idle


def dynamo_kv_cost(
    overlap_blocks: int, input_tokens: int, block_tokens: int, active_blocks: float, overlap_score_weight: float = 1.0
) -> float:
    """Dynamo's KV router cost of a worker: overlap_score_weight x prefill blocks + decode blocks
    (the lowest wins)."""
    prefill_blocks = max(input_tokens - overlap_blocks * block_tokens, 0) / block_tokens
    return overlap_score_weight * prefill_blocks + active_blocks + input_tokens / block_tokens


@dataclass
class PrefixAwareRouter:
    """Picks a replica for a request from its block chain: session affinity first (when on),
    then the spec's score; ties go to the lowest load, then the lowest index."""

    caches: Sequence[PrefixCache]
    spec: RoutingSpec = field(default_factory=RoutingSpec)
    scorer: str = "llm_d"  # llm_d | dynamo
    _session_home: dict[int, int] = field(default_factory=dict, repr=False)

    def route(self, hashes: Sequence[int], input_tokens: int, loads: Sequence[float], session_id: int = -1) -> int:
        if self.spec.session_affinity and session_id >= 0 and session_id in self._session_home:
            return self._session_home[session_id]
        if self.spec.kind == "least_outstanding":
            best = int(np.argmin(loads))
        else:
            overlap = [c.cached_prefix_blocks(hashes) for c in self.caches]
            if self.scorer == "dynamo":
                b = self.caches[0].block_tokens
                cost = [
                    dynamo_kv_cost(o, input_tokens, b, load, self.spec.cache_weight) for o, load in zip(overlap, loads)
                ]
                best = min(range(len(cost)), key=lambda r: (cost[r], loads[r], r))
            else:
                top = max(loads) if len(loads) else 0.0
                score = [llm_d_score(o, len(hashes), load, top, self.spec) for o, load in zip(overlap, loads)]
                best = min(range(len(score)), key=lambda r: (-score[r], loads[r], r))
        if session_id >= 0:
            self._session_home.setdefault(session_id, best)
        return best


def replay(batch, router: PrefixAwareRouter, *, request_order: Sequence[int] | None = None) -> dict:
    """Serve a RequestBatch one request at a time in arrival order, each finished before the next
    arrives (no two overlap): route it, hold its prompt blocks, add its answer's, release. Returns
    prompt and hit token counts (hits capped at prompt - 1: the last token is always computed).
    Load of a replica = the prompt blocks routed to it so far (a balance proxy for a replay)."""
    caches = router.caches
    b = caches[0].block_tokens
    loads = [0.0] * len(caches)
    prompt_tokens = hit_tokens = reloaded_tokens = 0
    per_replica = [0] * len(caches)
    for i in request_order if request_order is not None else range(len(batch)):
        n_in = int(batch.input_tokens[i])
        n_all = n_in + int(batch.output_tokens[i])
        kw = {
            "shared_prefix_tokens": int(batch.shared_prefix_tokens[i]),
            "class_index": int(batch.class_index[i]),
            "session_id": int(batch.session_id[i]),
            "request_id": int(i),
        }
        chain = block_hashes(n_all, b, **kw)
        prompt_blocks = n_in // b
        r = router.route(chain[:prompt_blocks], n_in, loads, kw["session_id"])
        found = caches[r].acquire(chain, prompt_blocks=prompt_blocks)
        caches[r].release(chain)
        loads[r] += prompt_blocks
        per_replica[r] += 1
        prompt_tokens += n_in
        hit_tokens += min((found.gpu_hit_blocks + found.reloaded_blocks) * b, n_in - 1)
        reloaded_tokens += found.reloaded_blocks * b
    return {
        "requests": int(sum(per_replica)),
        "prompt_tokens": prompt_tokens,
        "hit_tokens": hit_tokens,
        "reloaded_tokens": reloaded_tokens,
        "hit_fraction": hit_tokens / prompt_tokens if prompt_tokens else 0.0,
        "requests_per_replica": per_replica,
    }


def replica_prefix_cache(plan, step, offload=None) -> PrefixCache:
    """The prefix cache of one replica: the KV pool's blocks of a MemoryPlan, and with a
    KvOffloadSpec its host (and disk) tier. Each GPU reloads its own shard of a block over its
    own link (time = block bytes per GPU / link bandwidth); host_bytes is per replica (all ranks'
    shards). Recompute is priced by the StepModel as a prefill of the tokens after their context."""
    from fleetsim.kv_transfer import resolve_link

    block_bytes = float(plan.block_bytes_per_gpu)
    tiers = []
    if offload is not None:
        replica_block_bytes = block_bytes * plan.tp
        link = resolve_link(offload.link, "kv_cache.offload.link")
        host = int(offload.host_bytes // replica_block_bytes) if replica_block_bytes else 0
        tiers.append(CacheTier("host", host, link.effective_bytes_per_s, link.latency_s))
        if offload.disk_bytes > 0:
            disk = int(offload.disk_bytes // replica_block_bytes)
            tiers.append(CacheTier("disk", disk, offload.disk_bandwidth_bytes_per_s / plan.tp))

    def recompute_s(tokens: int, context_tokens: int) -> float:
        pair_bytes = tokens * float(step.footprint.bytes_per_rank(context_tokens + tokens / 2))
        return step.iteration(0, 0.0, prefill_tokens=tokens, prefill_pair_bytes=pair_bytes, prefill_seqs=1).time_s

    return PrefixCache(plan.kv_blocks, plan.block_tokens, block_bytes, tiers=tiers, recompute_s=recompute_s)
