"""The engine-aware fit to published figures: it recovers known parameters from figures made by a
known profile, and the shipped profiles are what it wrote (provenance, grades, residuals)."""

import numpy as np
import pytest

from fleetsim.calibrate.published.fit import Fit, fit_cases
from fleetsim.calibrate.published.params import priors
from fleetsim.catalog import gpu_names
from fleetsim.profile import engine_profile_names, load_engine_profile, load_profile, profile_names
from fleetsim.spec.engine import EngineSpec


@pytest.fixture(scope="module")
def all_fit_cases():
    return fit_cases()


@pytest.fixture
def itl_and_batch_cases(all_fit_cases):
    import copy

    picked = [c for c in all_fit_cases if c.case.group in ("vllm-itl", "mlenergy-8b") and c.gpu == "h100-sxm"]
    return [copy.copy(c) for c in picked]  # the test rewrites their published values


def test_the_fit_recovers_a_known_profile_from_the_figures_it_made(itl_and_batch_cases):
    pri = priors()
    fit = Fit(itl_and_batch_cases, pri)
    x_true = fit.vec.x0().copy()
    truth = {"h100-sxm:memory_eta": 0.82, "h100-sxm:compute_bf16": 0.61, "vllm-0.11:host_per_sequence_s": 4.0e-5}
    for key, value in truth.items():
        x_true[fit.vec.index[key]] = np.log(value)
    made = fit.predict(x_true)
    for c, v in zip(fit.cases, made):
        c.case = c.case.model_copy(update={"published": float(v) / (c.case.published_si / c.case.published)})
    fit.published = np.array([c.case.published_si for c in fit.cases])
    result = fit.run(max_nfev=30)
    got = {k: result.values[k.split(":")[0]][k.split(":")[1]] for k in truth}
    assert got["h100-sxm:memory_eta"] == pytest.approx(0.82, rel=0.03)
    assert got["h100-sxm:compute_bf16"] == pytest.approx(0.61, rel=0.10)
    assert got["vllm-0.11:host_per_sequence_s"] == pytest.approx(4.0e-5, rel=0.15)
    assert np.max(np.abs(result.rel_errors())) < 0.03  # it reproduces the figures it was given


def test_every_catalog_gpu_and_engine_ships_a_graded_profile():
    names = set(profile_names())
    for gpu in gpu_names():
        assert gpu in names, gpu
        prof = load_profile(gpu)
        assert prof.gpu == gpu and prof.power.cap_w > 0
        kind = prof.provenance.kind
        assert kind in ("fitted_to_published", "transferred", "measured", "prior")
        if kind == "transferred":
            assert prof.grade == f"transferred from {prof.provenance.transferred_from}"
            assert prof.provenance.transferred_from in names
        if kind == "fitted_to_published":
            assert prof.provenance.figures > 0 and prof.provenance.sources and prof.fit_residuals
            assert sum(prof.provenance.figures_by_engine.values()) == prof.provenance.figures
    for name in engine_profile_names():
        prof = load_engine_profile_named(name)
        assert prof.grade
        if prof.engine != "custom":
            assert prof.name == name
            assert load_engine_profile(EngineSpec(kind=prof.engine, version=prof.version)).name == name


def test_b200_and_gb200_are_fitted_to_their_own_figures_and_faster_than_h100():
    h100, b200 = load_profile("h100-sxm"), load_profile("b200")
    for gpu in ("b200", "gb200", "h200"):
        prof = load_profile(gpu)
        assert prof.provenance.kind == "fitted_to_published" and prof.provenance.figures >= 10, gpu
    # Not B200 at a fraction of its datasheet (the old host-bound fit gave 0.15 of peak).
    assert b200.compute_curve("bf16").eta_max >= 0.4
    from fleetsim.catalog import load_gpu

    assert b200.compute_curve("fp8").eta_max * load_gpu("b200").peak_flops("fp8") > (
        h100.compute_curve("fp8").eta_max * load_gpu("h100-sxm").peak_flops("fp8")
    )


def test_the_shipped_fit_residuals_match_a_recomputation(all_fit_cases):
    from fleetsim.calibrate.published.fit import worst_by_family

    cases = all_fit_cases
    fit = Fit(cases, priors())
    gp = {g: load_profile(g) for g in fit.source}
    ep = {e: load_engine_profile_named(e) for e in fit.engines}
    pred = np.array([c.predictor.predict(gp[c.gpu], ep[c.engine]) for c in cases])

    class R:  # the attributes worst_by_family reads
        pass

    r = R()
    r.cases, r.predicted = cases, pred
    r.rel_errors = lambda: pred / np.array([c.case.published_si for c in cases]) - 1.0
    for gpu in ("h100-sxm", "b200"):
        recorded = load_profile(gpu).fit_residuals
        for family, worst in worst_by_family(r, gpu).items():
            assert recorded[family] == pytest.approx(worst, abs=0.002), (gpu, family)


def load_engine_profile_named(name: str):
    from fleetsim.profile import _shipped, parse_engine_profile

    return parse_engine_profile(_shipped("engines", name), name)


def test_power_coefficients_are_graded_by_the_power_figures_fitted(all_fit_cases):
    """A profile says its power coefficients were fitted only where power or energy figures of that
    GPU were in the fit (H100: ML.ENERGY H100 power; B200: ML.ENERGY B200 power); H200's figures are
    all rates (MLPerf, TensorRT-LLM tables, SGLang), so its watts are priors and a run says so."""
    from fleetsim.calibration_status import calibration_status

    power_metrics = {"gpu_power_w", "energy_per_output_token_j"}
    for gpu in ("h100-sxm", "b200", "h200", "gb200"):
        prof = load_profile(gpu)
        counted = sum(c.gpu == gpu and c.case.metric in power_metrics for c in all_fit_cases)
        assert prof.provenance.power_figures == counted, gpu
        engine = load_engine_profile(EngineSpec(kind="trtllm", version="1.0"))
        warned = [w for w in calibration_status(prof, engine)["warnings"] if "power coefficients are priors" in w]
        assert bool(warned) == (counted == 0), gpu
    assert load_profile("h200").provenance.power_figures == 0
    assert load_profile("h100-sxm").provenance.power_figures > 0
