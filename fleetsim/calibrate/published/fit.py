"""The engine-aware fit: every GPU and engine profile at once, to the fit split of the shipped
validation cases, by regularized least squares.

Residuals: ln(predicted / published) / CASE_SIGMA for every fit case with status ok (predicted in
closed form by fleetsim.steady through the simulator's own step model), plus
(ln x - ln prior) / sd for every parameter (priors.yaml), so a parameter no figure constrains stays
at its physical prior. soft-L1 loss (a few odd figures do not drag the rest), scipy's trf with
bounds; the Jacobian is sparse (a case depends only on its GPU's and its engine's parameters).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares
from scipy.sparse import lil_matrix

from fleetsim.calibrate.published.params import (
    GLOBAL,
    Param,
    ParamVector,
    engine_params,
    global_params,
    gpu_params,
    make_engine_profile,
    make_gpu_profile,
    transferred_values,
)
from fleetsim.calibrate.published.predict import Predictor
from fleetsim.validation.cases import Case, load_cases, shipped_case_files

CASE_SIGMA = 0.05  # a 5% miss on a figure weighs like one prior standard deviation


@dataclass
class FitCase:
    case: Case
    predictor: Predictor
    gpu: str
    engine: str


def fit_cases(files: list[Path] | None = None, split: str = "fit") -> list[FitCase]:
    out = []
    tpot: dict[str, float] = {}  # source entry -> published mean TPOT of that run (s)
    for f in files or shipped_case_files():
        for c in load_cases(f):
            if c.metric == "tpot_s" and c.statistic == "mean":
                tpot[c.source.entry] = c.published_si
    for f in files or shipped_case_files():
        for c in load_cases(f):
            if c.split != split or c.status != "ok":
                continue
            try:
                p = Predictor(c, f.parent)
            except ValueError:  # no closed form for this statistic (e.g. a p99 under Poisson load)
                continue
            if p.kind == "poisson":
                p.operating_tpot_s = tpot.get(c.source.entry)
            out.append(FitCase(c, p, p.gpu.name, p.engine_key))
    return out


@dataclass
class FitResult:
    values: dict[str, dict]  # owner -> parameter values
    cases: list[FitCase]
    predicted: np.ndarray  # SI
    cost: float
    nfev: int

    def rel_errors(self) -> np.ndarray:
        pub = np.array([c.case.published_si for c in self.cases])
        return self.predicted / pub - 1.0


class Fit:
    def __init__(self, cases: list[FitCase], pri: dict):
        self.cases, self.pri = cases, pri
        transfer = pri["gpus"]["transferred"]
        self.source = {c.gpu: (c.gpu if c.gpu in pri["gpus"]["fitted"] else transfer.get(c.gpu)) for c in cases}
        unknown = sorted(g for g, src in self.source.items() if src is None)
        if unknown:
            raise ValueError(f"fit cases on GPUs neither fitted nor transferred in priors.yaml: {unknown}")
        gpus = sorted(set(self.source.values()))
        engines = sorted({c.engine for c in cases})
        params: list[Param] = global_params(pri)
        for g in gpus:
            params += gpu_params(g, pri)
        for e in engines:
            params += engine_params(e, pri["engines"][e], pri)
        self.vec = ParamVector(params)
        self.gpus, self.engines = gpus, engines
        self.published = np.array([c.case.published_si for c in cases])

    def profiles(self, x: np.ndarray):
        gp = {}
        shared = self.vec.values(x, GLOBAL)
        for g, src in self.source.items():
            vals = {**shared, **self.vec.values(x, src)}
            gp[g] = make_gpu_profile(g, vals if g == src else transferred_values(vals, src, g, self.pri), self.pri)
        ep = {e: make_engine_profile(e, self.pri["engines"][e], self.vec.values(x, e)) for e in self.engines}
        return gp, ep

    def predict(self, x: np.ndarray) -> np.ndarray:
        gp, ep = self.profiles(x)
        return np.array([c.predictor.predict(gp[c.gpu], ep[c.engine]) for c in self.cases])

    def residuals(self, x: np.ndarray) -> np.ndarray:
        pred = self.predict(x)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.log(np.maximum(pred, 1e-30) / self.published) / CASE_SIGMA
        r = np.where(np.isfinite(r), r, 50.0)
        return np.concatenate([r, self.vec.prior_residuals(x)])

    def sparsity(self) -> lil_matrix:
        n_cases, n_par = len(self.cases), len(self.vec.params)
        m = lil_matrix((n_cases + n_par, n_par), dtype=int)
        for i, c in enumerate(self.cases):
            for j, p in enumerate(self.vec.params):
                if p.owner in (self.source[c.gpu], c.engine, GLOBAL):
                    m[i, j] = 1
        for j in range(n_par):
            m[n_cases + j, j] = 1
        return m

    def run(self, max_nfev: int = 200) -> FitResult:
        lo, hi = self.vec.bounds()
        x0 = np.clip(self.vec.x0(), lo + 1e-9, hi - 1e-9)
        sol = least_squares(
            self.residuals,
            x0,
            bounds=(lo, hi),
            loss="soft_l1",
            f_scale=1.0,
            method="trf",
            jac_sparsity=self.sparsity(),
            x_scale=1.0,
            max_nfev=max_nfev,
            diff_step=1e-3,
        )
        values = {o: self.vec.values(sol.x, o) for o in [GLOBAL] + self.gpus + self.engines}
        return FitResult(values, self.cases, self.predict(sol.x), float(sol.cost), int(sol.nfev))


def residual_table(result: FitResult) -> list[dict]:
    rows = []
    for c, pred, err in zip(result.cases, result.predicted, result.rel_errors()):
        rows.append(
            {
                "id": c.case.id,
                "group": c.case.group,
                "gpu": c.gpu,
                "engine": c.engine,
                "metric": c.case.metric,
                "published_si": c.case.published_si,
                "predicted_si": float(pred),
                "error_pct": 100.0 * float(err),
            }
        )
    return rows


def worst_by_family(result: FitResult, owner: str) -> dict[str, float]:
    """Largest |error| per case group among the cases of one profile (its fit_residuals)."""
    out: dict[str, float] = {}
    for c, err in zip(result.cases, result.rel_errors()):
        if owner in (c.gpu, c.engine) and math.isfinite(err):
            key = f"{c.case.group}:{c.case.metric}"
            out[key] = round(max(out.get(key, 0.0), abs(float(err))), 4)
    return dict(sorted(out.items()))
