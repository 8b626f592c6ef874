"""Expert-parallel communication across servers, and two-batch overlap (TBO) of it with compute.

Across servers (fleet.ep larger than a server's GPUs) the MoE all-to-all runs as DeepEP's
internode "normal" kernels do (github.com/deepseek-ai/DeepEP, docs/legacy.md; what SGLang's
large-scale EP runs, lmsys.org/blog/2025-05-05-large-scale-ep): a token goes over RDMA once to
each other server holding one of its experts, and is forwarded over NVLink inside a server to
each GPU holding one; dispatch and combine each run at the slower of the two domains. Per token
of a rank, with N = ep / gpus_per_server servers and k experts per token routed uniformly
(an upper bound on bytes: DeepSeek's group-limited routing touches at most topk_group groups):

  remote servers  = (N - 1) (1 - (1 - 1/N)^k)          (RDMA copies; its own server is free)
  GPUs reached    = ep (1 - (1 - 1/ep)^k)               (NVLink deliveries)
  bytes per copy  = hidden x (dispatch + combine bytes per element)

Dispatch moves fp8 activations with one fp32 scale per 128 elements when the GEMMs run in fp8
(DeepSeek-V3 technical report, arXiv:2412.19437, section 3.3: activations before the MoE
up-projection are quantized to FP8 for dispatch; combine stays BF16), else bf16; combine is bf16.

Two-batch overlap (SGLang --enable-two-batch-overlap, after DeepSeek's design): a batch runs as
two micro-batches, one's communication overlapping the other's compute. Per step of compute C and
communication M (the all-to-alls), on a compute and a communication stream:

  t = max(M, C + f M) + min(C, M) / (2 L)

f: the share of the GPU's SMs the communication kernels hold while they run (DeepEP's normal
kernels: Buffer.set_num_sms(24) of an H100's 132, f = 0.18; the low-latency decode kernels receive
through a hook with no SMs, f = 0); compute slows by that share while communication runs. The last
term is the pipeline fill: one micro-batch's shorter half-layer of L MoE layers is not overlapped.
The weights stream once per micro-batch. Pure: no simpy, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

SCALE_GROUP_ELEMENTS = 128  # fp8 dispatch: one fp32 scale per 128 activations (DeepSeek-V3 fine-grained quantization)
SCALE_BYTES = 4.0
BF16_BYTES = 2.0


def remote_servers_per_token(servers: int, experts_per_token: int) -> float:
    """Expected other servers a token's experts lie on (uniform routing over `servers` servers)."""
    if servers <= 1:
        return 0.0
    return (servers - 1) * (1.0 - (1.0 - 1.0 / servers) ** experts_per_token)


def gpus_reached_per_token(ep: int, experts_per_token: int) -> float:
    """Expected distinct GPUs of `ep` a token's experts lie on (uniform routing)."""
    return ep * (1.0 - (1.0 - 1.0 / ep) ** experts_per_token)


def dispatch_bytes_per_element(fp8_dispatch: bool) -> float:
    return 1.0 + SCALE_BYTES / SCALE_GROUP_ELEMENTS if fp8_dispatch else BF16_BYTES


@dataclass(frozen=True)
class InternodeAllToAll:
    """Bytes one rank sends per token of the replica's batch in one MoE layer, dispatch and combine
    together, over RDMA and over NVLink, and the two domains' rates (bytes/s)."""

    rdma_bytes_per_token: float
    nvlink_bytes_per_token: float
    rdma_bytes_per_s: float
    nvlink_bytes_per_s: float
    latency_s: float

    def layer_s(self, tokens: float) -> float:
        """Dispatch + combine of one MoE layer for `tokens` tokens of the replica's batch."""
        rdma = tokens * self.rdma_bytes_per_token / self.rdma_bytes_per_s
        nvl = tokens * self.nvlink_bytes_per_token / self.nvlink_bytes_per_s
        return 2.0 * self.latency_s + max(rdma, nvl)


def internode_all_to_all(
    *,
    ep: int,
    tp: int,
    gpus_per_server: int,
    experts_per_token: int,
    hidden_size: int,
    fp8_dispatch: bool,
    rdma_bytes_per_s: float,
    nvlink_bytes_per_s: float,
    latency_s: float,
) -> InternodeAllToAll:
    """The DeepEP-style all-to-all of an EP group spanning ep / gpus_per_server servers; a rank
    sends 1/tp of the replica's tokens."""
    per_copy = hidden_size * (dispatch_bytes_per_element(fp8_dispatch) + BF16_BYTES) / tp
    servers = max(ep // gpus_per_server, 1)
    return InternodeAllToAll(
        rdma_bytes_per_token=remote_servers_per_token(servers, experts_per_token) * per_copy,
        nvlink_bytes_per_token=gpus_reached_per_token(ep, experts_per_token) * per_copy,
        rdma_bytes_per_s=rdma_bytes_per_s,
        nvlink_bytes_per_s=nvlink_bytes_per_s,
        latency_s=latency_s,
    )


def overlap_fill_s(compute_s: float, comm_s: float, moe_layers: int) -> float:
    """The part of a two-batch-overlapped step that is not overlapped: one micro-batch's shorter
    half-layer, min(C, M) / (2 L)."""
    return min(compute_s, comm_s) / (2.0 * max(moe_layers, 1))


def two_batch_overlap_s(compute_s: float, comm_s: float, comm_sm_fraction: float, moe_layers: int) -> float:
    """GPU time of a step whose compute and all-to-all communication overlap in two micro-batches."""
    if comm_s <= 0.0:
        return compute_s
    return max(comm_s, compute_s + comm_sm_fraction * comm_s) + overlap_fill_s(compute_s, comm_s, moe_layers)
