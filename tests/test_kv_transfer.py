"""KV transfer for P/D disaggregation, by hand: Llama-3-70B bf16 holds
80 layers x 8 KV heads x 128 head dim x (2 B key + 2 B value) = 327,680 B per token."""

import pytest

from fleetsim.catalog import load_model
from fleetsim.errors import FleetsimError, SpecError
from fleetsim.kv_transfer import (
    Link,
    kv_transfer,
    link_names,
    load_link,
    plan_disaggregation,
    resolve_link,
    transfer_time_s,
)
from fleetsim.spec.kvcache import KvCacheSpec
from fleetsim.spec.topology import DisaggregationSpec, LinkSpec

PER_TOKEN_BYTES = 80 * 8 * 128 * 2 * 2  # 327,680
BARE = Link("bare", "inter_node", bandwidth_bytes_per_s=50e9, latency_s=5e-6)  # NDR, no overhead


def test_llama3_70b_bytes_per_request():
    arch = load_model("llama-3-70b")
    t = kv_transfer(arch, 1000, BARE, prefill_tp=2, decode_tp=4)
    assert t.model_bytes == PER_TOKEN_BYTES * 1000
    assert t.decode_rank_bytes == PER_TOKEN_BYTES * 1000 / 4  # 2 of 8 KV heads per rank
    assert t.decode_replica_bytes == PER_TOKEN_BYTES * 1000
    assert t.prefill_rank_bytes == PER_TOKEN_BYTES * 1000 / 2
    # the 2 senders are the bottleneck: 163.84 MB each over 50 GB/s
    assert t.time_s == pytest.approx(5e-6 + 163_840_000 / 50e9)
    # fp8 KV halves it
    fp8 = kv_transfer(arch, 1000, BARE, kv=KvCacheSpec(key_dtype="fp8", value_dtype="fp8"), prefill_tp=2, decode_tp=4)
    assert fp8.model_bytes == PER_TOKEN_BYTES * 1000 / 2


def test_replicated_heads_and_mla():
    # tp 16 > 8 KV heads: each decode rank holds one whole head, so the replica receives twice the model
    arch = load_model("llama-3-70b")
    t = kv_transfer(arch, 100, BARE, prefill_tp=8, decode_tp=16)
    assert t.decode_rank_bytes == 80 * 1 * 128 * 4 * 100
    assert t.decode_replica_bytes == 2 * t.model_bytes
    # DeepSeek-V3 MLA: (512 + 64) x 61 layers x 2 B per token, the latent whole on every rank
    ds = load_model("deepseek-v3")
    d = kv_transfer(ds, 1000, BARE, prefill_tp=8, decode_tp=8)
    assert d.model_bytes == (512 + 64) * 61 * 2 * 1000
    assert d.decode_rank_bytes == d.model_bytes and d.prefill_rank_bytes == d.model_bytes


def test_layer_pipelined_exposes_only_the_tail():
    arch = load_model("llama-3-70b")
    full = kv_transfer(arch, 1000, BARE, prefill_tp=2, decode_tp=4)
    t = full.time_s - BARE.latency_s
    # prefill slower than the transfer: one layer's share is left (T / 80)
    slow = kv_transfer(arch, 1000, BARE, prefill_tp=2, decode_tp=4, prefill_s=0.5)
    assert slow.exposed_s == pytest.approx(BARE.latency_s + t / 80)
    # prefill of 1 ms, transfer of 3.28 ms: T - P x 79/80 remains
    fast = kv_transfer(arch, 1000, BARE, prefill_tp=2, decode_tp=4, prefill_s=1e-3)
    assert fast.exposed_s == pytest.approx(BARE.latency_s + t - 1e-3 * 79 / 80)


def test_catalog_links():
    assert {"nvlink4", "infiniband-ndr", "infiniband-xdr", "roce-400g", "pcie-gen5", "nvlink-c2c"} <= set(link_names())
    ndr = load_link("infiniband-ndr")
    assert ndr.bandwidth_bytes_per_s == 400e9 / 8  # 400 Gb/s
    assert load_link("pcie-gen5").bandwidth_bytes_per_s == pytest.approx(32e9 * 16 * 128 / 130 / 8, rel=0.01)
    assert transfer_time_s(0, ndr) == ndr.latency_s
    custom = resolve_link(LinkSpec(name="infiniband-ndr", bandwidth_bytes_per_s=25e9))
    assert custom.bandwidth_bytes_per_s == 25e9 and custom.latency_s == ndr.latency_s
    assert resolve_link(LinkSpec(bandwidth_bytes_per_s=1e9)).efficiency == 1.0


def test_bad_link_and_tp_are_one_line():
    with pytest.raises(SpecError, match=r"link.name: 'infiniband-hdr' is not a known link; valid: ") as e:
        load_link("infiniband-hdr")
    assert "\n" not in str(e.value)
    with pytest.raises(SpecError, match="tp: 3"):
        kv_transfer(load_model("llama-3-70b"), 10, BARE, prefill_tp=3)
    with pytest.raises(ValueError, match="catalog name or bandwidth"):
        LinkSpec()


def pd(prefill_tp=2, decode_tp=4, **extra):
    return DisaggregationSpec.model_validate(
        {
            "prefill": {"gpu": "h100-sxm", "tp": prefill_tp, "replicas": 3},
            "decode": {"gpu": "h100-sxm", "tp": decode_tp},
            **extra,
        }
    )


def test_llama3_70b_pd_plan():
    plan = plan_disaggregation("llama-3-70b", pd(), context_tokens=8192)
    assert plan.prefill.tp == 2 and plan.decode.tp == 4
    # 8,192 tokens x 327,680 B = 2.68 GB; the two prefill ranks each send half over NDR (0.9 x 50 GB/s)
    assert plan.transfer.model_bytes == 8192 * PER_TOKEN_BYTES
    ndr = load_link("infiniband-ndr")
    assert plan.transfer.time_s == pytest.approx(ndr.latency_s + 8192 * PER_TOKEN_BYTES / 2 / (0.9 * 50e9))


@pytest.mark.parametrize(
    "spec,context,match",
    [
        (pd(prefill_tp=3), 8192, r"^disaggregation.prefill.tp: 3 does not divide the 64 attention heads"),
        (pd(prefill_tp=1), 8192, r"^disaggregation.prefill: llama-3-70b \(bf16\) does not fit on h100-sxm at tp=1"),
        (pd(decode_tp=2), 1_000_000, r"^disaggregation.decode: .* cannot hold one sequence of 1000000 tokens"),
        (pd(link={"name": "infiniband-hdr"}), 8192, r"^disaggregation.link.name: 'infiniband-hdr' is not a known link"),
    ],
)
def test_bad_topologies_are_one_line(spec, context, match):
    with pytest.raises(FleetsimError, match=match) as e:
        plan_disaggregation("llama-3-70b", spec, context_tokens=context)
    assert "\n" not in str(e.value)
