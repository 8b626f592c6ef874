"""KV-cache transfer for prefill/decode disaggregation, and the links it runs over.

Bytes of one request's KV come from the memory model (KvFootprint of the prompt). Each rank of
the decode replica needs its own shard (KV heads split over its tp, replicated when tp exceeds
the KV heads; the MLA latent whole on every rank); the prefill ranks send those shards between
them. With one link (NIC or NVLink port) per GPU, the transfer takes

    time = latency + max(bytes each decode rank receives, bytes all decode ranks receive / prefill tp)
                     / (efficiency x bandwidth)

(the busier side sets the pace: 4 decode ranks fed by 2 prefill ranks wait on the senders).
Layer-pipelined (each layer's KV sent as soon as prefill finishes it; prefill time P and
transfer time T split evenly over L layers), the last byte lands at max(P + T/L, P/L + T), so
after the prefill ends only latency + max(T/L, T - P (L-1)/L) is exposed.

Links come from fleetsim/catalog/links.yaml (bandwidth one direction per GPU, latency, the
efficiency a large transfer reaches, a source for each). Pure: no simpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

from fleetsim.errors import SpecError
from fleetsim.memory import MemoryPlan, kv_footprint
from fleetsim.spec.architecture import Architecture
from fleetsim.spec.kvcache import KvCacheSpec
from fleetsim.spec.topology import DisaggregationSpec, LinkSpec
from fleetsim.spec.yaml_file import loads

__all__ = [
    "DisaggregationPlan",
    "KvTransfer",
    "Link",
    "kv_transfer",
    "link_names",
    "load_link",
    "pipelined_exposed_s",
    "plan_disaggregation",
    "resolve_link",
    "transfer_time_s",
]


@dataclass(frozen=True)
class Link:
    name: str
    scope: str  # intra_node | inter_node | host
    bandwidth_bytes_per_s: float  # one direction, per GPU
    latency_s: float
    efficiency: float = 1.0
    source: str = ""

    @property
    def effective_bytes_per_s(self) -> float:
        return self.efficiency * self.bandwidth_bytes_per_s


@cache
def _links() -> dict:
    text = resources.files("fleetsim.catalog").joinpath("links.yaml").read_text()
    return loads(text, "fleetsim/catalog/links.yaml")["links"]


def link_names() -> list[str]:
    return sorted(_links())


def load_link(name: str, field: str = "link.name") -> Link:
    """A catalog link; an unknown name is one line listing the valid ones."""
    entry = _links().get(name)
    if entry is None:
        raise SpecError(f"{field}: '{name}' is not a known link; valid: {', '.join(link_names())}")
    return Link(
        name=name,
        scope=entry["scope"],
        bandwidth_bytes_per_s=float(entry["bandwidth_bytes_per_s"]),
        latency_s=float(entry["latency_s"]),
        efficiency=float(entry.get("efficiency", 1.0)),
        source=entry.get("source", ""),
    )


def resolve_link(spec: LinkSpec, field: str = "link") -> Link:
    """The link a LinkSpec names, with any figure it gives in place of the catalog's."""
    base = load_link(spec.name, f"{field}.name") if spec.name is not None else None
    bw = spec.bandwidth_bytes_per_s
    if bw is None:  # LinkSpec holds a name or a bandwidth
        bw = base.bandwidth_bytes_per_s if base else 0.0
    latency = spec.latency_s if spec.latency_s is not None else (base.latency_s if base else 0.0)
    eff = spec.efficiency if spec.efficiency is not None else (base.efficiency if base else 1.0)
    return Link(
        name=spec.name or "custom",
        scope=base.scope if base else "custom",
        bandwidth_bytes_per_s=float(bw),
        latency_s=float(latency),
        efficiency=float(eff),
        source=base.source if base else "scenario",
    )


def transfer_time_s(bytes_: float, link: Link) -> float:
    """latency + bytes / (efficiency x bandwidth): one transfer over one link."""
    if bytes_ < 0:
        raise SpecError(f"bytes: {bytes_} is not valid; give a number >= 0")
    return link.latency_s + bytes_ / link.effective_bytes_per_s


@dataclass(frozen=True)
class KvTransfer:
    """One request's KV handoff from a prefill replica to a decode replica."""

    prompt_tokens: int
    prefill_tp: int
    decode_tp: int
    model_bytes: float  # the KV of the prompt at tp 1 (no replicated heads): what the model holds
    decode_rank_bytes: float  # what each decode rank receives
    decode_replica_bytes: float  # what all decode ranks receive (replicated heads counted each time)
    prefill_rank_bytes: float  # what each prefill rank sends (the decode replica's bytes shared out)
    link: Link
    time_s: float  # the whole transfer, started after the prefill
    exposed_s: float  # what remains after the prefill ends (layer-pipelined; = time_s otherwise)

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "link"}
        d["link"] = self.link.name
        return d


def kv_transfer(
    arch: Architecture,
    prompt_tokens: int,
    link: Link,
    *,
    kv: KvCacheSpec = KvCacheSpec(),
    prefill_tp: int = 1,
    decode_tp: int = 1,
    prefill_s: float | None = None,
    prefill_dp: int = 1,
    decode_dp: int = 1,
) -> KvTransfer:
    """Bytes and time of moving one prompt's KV. With `prefill_s` (the prefill's own time) the
    transfer is layer-pipelined and `exposed_s` is the part left after the prefill ends. With DP
    attention (dp > 1) a request lives on one attention group of tp / dp ranks of each replica:
    only those ranks send and receive it."""
    if prompt_tokens < 1:
        raise SpecError(f"prompt_tokens: {prompt_tokens} is not valid; give at least 1 token")
    decode_group, prefill_group = decode_tp // decode_dp, prefill_tp // prefill_dp
    model_bytes = float(kv_footprint(arch, kv, 1).bytes_per_rank(prompt_tokens))
    rank_bytes = float(kv_footprint(arch, kv, decode_group).bytes_per_rank(prompt_tokens))
    kv_footprint(arch, kv, prefill_group)  # checks the prefill attention TP against the model's heads
    replica_bytes = rank_bytes * decode_group
    sender_bytes = replica_bytes / prefill_group
    busiest = max(rank_bytes, sender_bytes)
    time_s = transfer_time_s(busiest, link)
    exposed_s = time_s if prefill_s is None else pipelined_exposed_s(time_s, link, arch.num_layers, prefill_s)
    return KvTransfer(
        prompt_tokens=prompt_tokens,
        prefill_tp=prefill_tp,
        decode_tp=decode_tp,
        model_bytes=model_bytes,
        decode_rank_bytes=rank_bytes,
        decode_replica_bytes=replica_bytes,
        prefill_rank_bytes=sender_bytes,
        link=link,
        time_s=time_s,
        exposed_s=exposed_s,
    )


def pipelined_exposed_s(time_s: float, link: Link, layers: int, prefill_s: float) -> float:
    """What a layer-pipelined transfer of `time_s` (latency included) leaves after a prefill of
    `prefill_s`: latency + max(T/L, T - P (L-1)/L), T the bytes' time on the link."""
    t = time_s - link.latency_s
    return link.latency_s + max(t / layers, t - prefill_s * (layers - 1) / layers)


@dataclass(frozen=True)
class DisaggregationPlan:
    """Both pools' memory plans and the KV handoff of one prompt of `context_tokens`."""

    prefill: MemoryPlan
    decode: MemoryPlan
    transfer: KvTransfer

    def as_dict(self) -> dict:
        return {"prefill": self.prefill.as_dict(), "decode": self.decode.as_dict(), "transfer": self.transfer.as_dict()}


def plan_disaggregation(
    model: str,
    spec: DisaggregationSpec,
    *,
    context_tokens: int,
    weight_dtype: str = "bf16",
    kv: KvCacheSpec = KvCacheSpec(),
    gpu_memory_utilization: float = 0.9,
) -> DisaggregationPlan:
    """Check a P/D topology before any clock starts: each pool's GPU and TP hold the model, the
    decode pool holds one sequence of context_tokens, and the link exists; every problem is one
    line naming the pool (disaggregation.prefill / disaggregation.decode / disaggregation.link)."""
    from fleetsim.catalog import load_gpu, load_model
    from fleetsim.errors import CapacityError, FleetsimError
    from fleetsim.memory import plan_memory

    arch = load_model(model)
    link = resolve_link(spec.link, "disaggregation.link")
    plans = {}
    for role, pool, ctx in (("prefill", spec.prefill, 1), ("decode", spec.decode, context_tokens)):
        try:
            plans[role] = plan_memory(
                arch,
                load_gpu(pool.gpu),
                tp=pool.tp,
                weight_dtype=weight_dtype,
                kv=kv,
                context_tokens=ctx,
                gpu_memory_utilization=gpu_memory_utilization,
            )
        except CapacityError as exc:
            raise CapacityError(f"disaggregation.{role}: {exc}") from None
        except FleetsimError as exc:
            raise type(exc)(f"disaggregation.{role}.{exc}") from None
    transfer = kv_transfer(arch, context_tokens, link, kv=kv, prefill_tp=spec.prefill.tp, decode_tp=spec.decode.tp)
    return DisaggregationPlan(plans["prefill"], plans["decode"], transfer)
