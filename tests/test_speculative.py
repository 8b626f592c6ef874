"""Speculative decoding / MTP: tokens per step against a Monte Carlo draw and hand sums, the
verify step against the physics of a memory-bound decode, published acceptance defaults."""

import numpy as np
import pytest

from fleetsim.errors import SpecError
from fleetsim.spec.kvcache import KvCacheSpec
from fleetsim.spec.topology import SpeculativeSpec
from fleetsim.speculative import (
    build_step_model,
    expected_tokens_by_position,
    expected_tokens_per_step,
    implied_acceptance,
    mtp_pays_at_batch,
    published_acceptance,
    speculative_step,
    step_acceptance,
)


def monte_carlo_tokens(acceptances, steps, seed=0):
    """Draw each step: positions accepted in order until the first rejection; +1 bonus token."""
    rng = np.random.default_rng(seed)
    u = rng.random((steps, len(acceptances)))
    accepted = np.cumprod(u < np.asarray(acceptances), axis=1).sum(axis=1)
    return 1.0 + accepted


@pytest.mark.parametrize("a,k", [(0.5, 2), (0.875, 1), (0.8, 4), (0.3, 7), (0.0, 3), (1.0, 5)])
def test_closed_form_matches_monte_carlo(a, k):
    draws = monte_carlo_tokens([a] * k, 200_000)
    stderr = draws.std() / np.sqrt(len(draws))
    assert abs(draws.mean() - expected_tokens_per_step(a, k)) <= 5 * stderr + 1e-12


def test_hand_cases():
    assert expected_tokens_per_step(0.5, 2) == pytest.approx(1 + 0.5 + 0.25)
    assert expected_tokens_per_step(0.875, 1) == pytest.approx(1.875)  # DeepSeek-V3 MTP midpoint
    assert expected_tokens_per_step(1.0, 3) == 4.0
    assert expected_tokens_per_step(0.0, 3) == 1.0
    # per position: 1 + 0.9 + 0.9 x 0.5
    assert expected_tokens_by_position([0.9, 0.5]) == pytest.approx(2.35)
    draws = monte_carlo_tokens([0.9, 0.5], 200_000, seed=1)
    assert draws.mean() == pytest.approx(2.35, abs=5 * draws.std() / np.sqrt(len(draws)))


def test_implied_acceptance_inverts_the_closed_form():
    assert implied_acceptance(expected_tokens_per_step(0.62, 5), 5) == pytest.approx(0.62, abs=1e-9)
    # nebius/MTP-DeepSeek-V3-0324 card: original MTP tau 3.20 at K=7
    a = published_acceptance("deepseek-v3-0324-mtp-k7")
    assert expected_tokens_per_step(a, 7) == pytest.approx(3.20, abs=1e-9)
    with pytest.raises(SpecError, match="valid: 1 to 3"):
        implied_acceptance(3.5, 2)


def test_published_default_is_deepseek_v3_midpoint():
    # DeepSeek-V3 technical report sec. 5.4.3: second-token acceptance 85-90%
    assert published_acceptance(method="mtp") == pytest.approx(0.875)
    spec = SpeculativeSpec(method="mtp", draft_tokens=2, acceptance_by_class={"code": 0.95})
    assert step_acceptance(spec) == (0.875, 0.875)
    assert step_acceptance(spec, "code") == (0.95, 0.95)


def test_spec_checks():
    with pytest.raises(ValueError, match="draft_model"):
        SpeculativeSpec(method="draft_model")
    with pytest.raises(ValueError, match="one per draft token"):
        SpeculativeSpec(method="mtp", draft_tokens=3, acceptance_by_position=(0.9, 0.8))
    with pytest.raises(SpecError, match="acceptance"):
        expected_tokens_per_step(1.2, 2)


@pytest.fixture(scope="module")
def deepseek():
    return build_step_model("deepseek-v3", "h200", tp=8, weight_dtype="fp8", kv=KvCacheSpec())


def test_verify_at_batch_one_costs_about_a_decode_step(deepseek):
    # Batch 1 is memory-bound: the verify pass streams the same KV once and the experts its
    # 2 tokens touch (at most 2 x 8 of 256 per layer vs 8), so it costs little more than a decode
    # step and far less than two; TPOT falls by nearly the 1.875 tokens per step.
    s = speculative_step(deepseek, SpeculativeSpec(method="mtp"), 1, 2000)
    assert s.baseline_step_s < s.verify_s < 1.3 * s.baseline_step_s
    # the MTP head is one of 61 layers: about 1/61 of a decode step's GPU time per draft token
    assert s.draft_s < 2.0 * s.baseline_step_s / 61
    assert 1.0 < s.speedup < 1.875
    assert s.tpot_s == pytest.approx(s.step_s / 1.875)
    assert s.kv_growth_tokens_per_step == pytest.approx(1.875) and s.kv_lookahead_tokens == 1


def test_draft_model_stops_paying_at_large_batch():
    target = build_step_model("llama-3-70b", "h100-sxm", tp=4)
    draft = build_step_model("llama-3-8b", "h100-sxm", tp=4)
    spec = SpeculativeSpec(method="draft_model", draft_model="llama-3-8b", draft_tokens=4, acceptance=0.8)
    pays_small, small = mtp_pays_at_batch(target, spec, 1, 2000, draft=draft)
    pays_large, large = mtp_pays_at_batch(target, spec, 256, 2000, draft=draft)
    assert pays_small and small.speedup > 1.5
    # at batch 256 the verify of 5 x 256 tokens is compute-bound: 5x the GEMM FLOPs of a decode step
    assert not pays_large and large.speedup < 1.0
    assert large.verify_s > 2 * large.baseline_step_s


def test_topology_specs_are_frozen_strict_and_described():
    import fleetsim.spec.topology as topology
    from fleetsim.spec.base import Spec

    classes = [c for c in vars(topology).values() if isinstance(c, type) and issubclass(c, Spec) and c is not Spec]
    assert len(classes) == 7
    for cls in classes:
        assert cls.model_config["frozen"] and cls.model_config["extra"] == "forbid", cls
        for name, f in cls.model_fields.items():
            assert f.description, f"{cls.__name__}.{name}"
    with pytest.raises(ValueError, match="Extra inputs"):
        SpeculativeSpec(method="mtp", draft_lenght=2)


def test_draft_memory(deepseek):
    s = speculative_step(deepseek, SpeculativeSpec(method="mtp"), 4, 1000)
    # one MoE layer of DeepSeek-V3: 256 routed experts x 3 x 7168 x 2048 parameters plus its share of
    # the rest, fp8 (1 B) over 8 GPUs; published: the MTP module is 14B of the 685B checkpoint
    experts = 256 * 3 * 7168 * 2048
    assert experts / 8 < s.draft_weight_bytes_per_gpu < 14e9 / 8
    # its KV: one more MLA layer, (512 + 64) x 2 B per token (the latent whole on every rank)
    assert s.draft_kv_bytes_per_token_per_gpu == pytest.approx(576 * 2)
    assert s.kv_growth_bytes_per_step_per_gpu == pytest.approx(1.875 * 61 * 576 * 2)
    target = build_step_model("llama-3-70b", "h100-sxm", tp=4)
    draft = build_step_model("llama-3-8b", "h100-sxm", tp=4)
    d = speculative_step(target, SpeculativeSpec(method="draft_model", draft_model="llama-3-8b"), 1, 100, draft=draft)
    assert d.draft_weight_bytes_per_gpu == pytest.approx(8_030_261_248 * 2 / 4, rel=0.01)  # Llama-3-8B bf16 / 4
    assert d.draft_kv_bytes_per_token_per_gpu == 32 * 2 * 128 * 4  # 8 KV heads over 4 ranks


def test_deepseek_v3_mtp_near_the_published_speedup(deepseek):
    # DeepSeek-V3 technical report sec. 5.4.3: MTP (k = 1, acceptance 85-90%) gives 1.8x TPS. Their
    # deployment (H800, large expert parallelism) is not this one (8 x H200, TP 8), so the check is
    # loose: at a serving batch, where every expert is already read, within 20% of 1.8.
    s = speculative_step(deepseek, SpeculativeSpec(method="mtp"), 128, 2000)
    assert s.speedup == pytest.approx(1.8, rel=0.2)
