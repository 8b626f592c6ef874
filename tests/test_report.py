"""The HTML report: self-contained, every section present, and every number in every table equal to
the results it was made from (re-simulated, read from the sweep/plan files, or recomputed here)."""

import base64
import json
import math
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

import fleetsim
from fleetsim.catalog import load_gpu, load_model
from fleetsim.cost import hourly_cost_usd, usd_per_million_tokens
from fleetsim.errors import CapacityError, SpecError
from fleetsim.memory import valid_tp_degrees
from fleetsim.plan import plan_fleet
from fleetsim.report.html import write_report
from fleetsim.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "h100_llama3.yaml"
SHORT = {"run.duration_s": 30}
# The right-sizing a scenario report runs, kept small: two GPU types, two seeds, tp 1.
STUDY = {"gpus": ["h100-sxm", "h200"], "seeds": 2, "tp_options": [1]}
SECTIONS = (
    "question",
    "recommendation",
    "assumptions",
    "comparison",
    "latency",
    "power-cooling",
    "kv-capacity",
    "utilization",
    "sensitivity",
    "method",
)
FIGURES = (
    "fig-cost",
    "fig-latency_load",
    "fig-latency_dist",
    "fig-power",
    "fig-kv",
    "fig-utilization",
    "fig-sensitivity",
)


# --------------------------------------------------------------------------- reading the HTML back
class _Report(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids, self.imgs, self.links, self.tags = set(), [], [], set()
        self.tables: dict[str, dict] = {}
        self._table = self._row = self._cell = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        if "id" in a:
            self.ids.add(a["id"])
        for k in ("src", "href"):
            if k in a:
                self.links.append(a[k])
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag == "table":
            self._table = self.tables[a["id"]] = {
                "source": a.get("data-source"),
                "rows": [],
                "overrides": a.get("data-overrides"),
            }
        elif tag == "tr" and self._table is not None and "data-row" in a:
            self._row = {"key": a["data-row"], "overrides": a.get("data-overrides"), "cells": {}}
            self._table["rows"].append(self._row)
        elif tag == "td" and self._row is not None:
            self._cell = {
                "col": a.get("data-col"),
                "value": a.get("data-value"),
                "scale": a.get("data-scale"),
                "text": "",
            }

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._row["cells"][self._cell["col"]] = self._cell
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "table":
            self._table = None


def _read(path: Path) -> _Report:
    p = _Report()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def _value(cell):
    v = cell["value"]
    if v in ("true", "false"):
        return v == "true"
    return float(v)


def _numeric_cells(report: _Report):
    for tid, t in report.tables.items():
        for row in t["rows"]:
            for col, c in row["cells"].items():
                if c["value"] is not None:
                    yield tid, t, row, col, c


def _close(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or a == b
    if b is None or (isinstance(b, float) and math.isnan(b)):
        return False
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)


def _check_structure_and_text(path: Path) -> _Report:
    html = path.read_text(encoding="utf-8")
    report = _read(path)
    for s in SECTIONS:
        assert s in report.ids, f"section #{s} missing"
    for f in FIGURES:
        assert f in report.ids, f"figure #{f} missing"
    assert report.imgs and all(src.startswith("data:image/png;base64,") for src in report.imgs)
    for src in report.imgs:
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [u for u in report.links if re.match(r"(?i)\s*(https?:)?//", u)], "external reference"
    assert all(u.startswith(("#", "data:")) for u in report.links)
    assert "script" not in report.tags and "link" not in report.tags and "iframe" not in report.tags
    assert not re.search(r"(?i)url\(\s*['\"]?https?:", html) and "@import" not in html
    # Every number shown is its data-value, rounded for display.
    n = 0
    for tid, _, row, col, c in _numeric_cells(report):
        v = _value(c)
        text = c["text"].strip()
        if isinstance(v, bool):
            assert text == ("yes" if v else "no"), (tid, row["key"], col)
            continue
        shown = float(text.replace(",", "").replace("%", ""))
        scale = float(c["scale"]) if c["scale"] else 1.0
        decimals = len(text.split(".")[1].rstrip("%")) if "." in text else 0
        assert abs(shown - v * scale) <= 0.5 * 10**-decimals * (1 + 1e-9) + 1e-12, (tid, row["key"], col, text, v)
        n += 1
    assert n > 50
    return report


# --------------------------------------------------------------------------- checking against the sources
class _Sims:
    """Independent simulations, one per distinct set of overrides."""

    def __init__(self, scenario):
        self.scenario, self.cache = scenario, {}

    def flat(self, overrides: dict) -> dict:
        key = json.dumps(overrides, sort_keys=True)
        if key not in self.cache:
            s = fleetsim.simulate(self.scenario, overrides).summary
            self.cache[key] = pd.json_normalize(s, sep=".").iloc[0].to_dict()
        return self.cache[key]


def _check_summary_tables(report: _Report, sims: _Sims, base_overrides: dict) -> None:
    """t-run (rows = metric paths) and every growth-sourced table (cols = metric paths)."""
    run = report.tables["t-run"]
    flat = sims.flat({**base_overrides, **json.loads(run["overrides"])})
    for row in run["rows"]:
        for c in row["cells"].values():
            if c["value"] is not None:
                assert _close(_value(c), flat[row["key"]]), (row["key"], c, flat[row["key"]])
    bill = report.tables.get("t-bill")
    if bill is not None:
        # The bill of the reference run: each cell is one path of the run's summary `bill`.
        from fleetsim.report.bill_table import bill_paths

        flat = sims.flat({**base_overrides, **json.loads(bill["overrides"])})
        assert {r["key"] for r in bill["rows"]} >= {"gpu_hours_billed", "rent_usd.on_demand_usd", "own_usd.total_usd"}
        for row in bill["rows"]:
            for col, path in bill_paths(row["key"]).items():
                c = row["cells"][col]
                if path is None:
                    assert c["value"] is None
                else:
                    assert _close(_value(c), flat[path]), (row["key"], col, c, flat[path])
    for tid, t in report.tables.items():
        if t["source"] != "growth":
            continue
        for row in t["rows"]:
            ov = json.loads(row["overrides"])
            flat = sims.flat({**base_overrides, **ov})
            for col, c in row["cells"].items():
                if c["value"] is None:
                    continue
                if col == "offered_rate_per_s":
                    rate = fleetsim.load_scenario(sims.scenario, {**base_overrides, **ov}).workload.arrival.rate_per_s
                    assert _close(_value(c), rate)
                else:
                    assert _close(_value(c), flat[col]), (tid, row["key"], col)


def _check_derived_tables(report: _Report, spec, flat: dict) -> None:
    """Sensitivity to prices and PUE, recomputed here from the run's energy and throughput."""
    gpu = load_gpu(spec.fleet.gpu)
    n, it_kw = flat["fleet.gpus"], flat["power.it_mean_kw"]
    tps = flat["throughput.output_tokens_per_s"] + flat["throughput.input_tokens_per_s"]

    def cost(cost_spec, pue):
        h = hourly_cost_usd(
            cost_spec, gpu, n, it_kw, pue, server_overhead_w=spec.facility.server_overhead_w
        ).usd_per_hour
        return h, usd_per_million_tokens(h, tps)

    owned = spec.cost.model_copy(update={"mode": "owned"})
    checked = 0
    for row in report.tables["t-sens-electricity"]["rows"]:
        e = float(row["key"])
        _, m = cost(spec.cost.model_copy(update={"electricity_usd_per_kwh": e}), spec.facility.pue)
        oh, om = cost(owned.model_copy(update={"electricity_usd_per_kwh": e}), spec.facility.pue)
        got = {k: _value(c) for k, c in row["cells"].items() if c["value"] is not None}
        assert got == pytest.approx(
            {
                "electricity_usd_per_kwh": e,
                "usd_per_million_tokens": m,
                "owned_usd_per_hour": oh,
                "owned_usd_per_million_tokens": om,
            },
            rel=1e-12,
        )
        checked += 1
    for row in report.tables["t-sens-pue"]["rows"]:
        p = float(row["key"])
        _, m = cost(spec.cost, p)
        oh, om = cost(owned, p)
        got = {k: _value(c) for k, c in row["cells"].items() if c["value"] is not None}
        assert got == pytest.approx(
            {
                "pue": p,
                "facility_kw": it_kw * p,
                "usd_per_million_tokens": m,
                "owned_usd_per_hour": oh,
                "owned_usd_per_million_tokens": om,
            },
            rel=1e-12,
        )
        checked += 1
    base_price = spec.cost.rental_usd_per_gpu_hour or gpu.rental_usd_per_gpu_hour
    prices = []
    for row in report.tables["t-sens-rental"]["rows"]:
        price = float(row["key"])
        prices.append(price)
        h, m = cost(
            spec.cost.model_copy(update={"mode": "rental", "rental_usd_per_gpu_hour": price}), spec.facility.pue
        )
        got = {k: _value(c) for k, c in row["cells"].items() if c["value"] is not None}
        assert got == pytest.approx(
            {"rental_usd_per_gpu_hour": price, "usd_per_hour": h, "usd_per_million_tokens": m}, rel=1e-12
        )
        checked += 1
    assert base_price in prices and checked >= 15
    # Today's row of each table is the run's own cost.
    base_rows = [r for r in report.tables["t-sens-pue"]["rows"] if float(r["key"]) == spec.facility.pue]
    assert _close(_value(base_rows[0]["cells"]["usd_per_million_tokens"]), flat["cost.usd_per_million_tokens"])


def _check_kv_and_assumptions(report: _Report, spec) -> None:
    kv = report.tables["t-kv"]
    models = [r["key"] for r in kv["rows"]]
    assert {"gpt2-xl", "llama-3-8b", "deepseek-v3", "gemma-3-27b", "mamba-2.8b"} <= set(models)
    ref = fleetsim.kv_table(models, 4096, spec.kv_cache).set_index("model")
    gpu = load_gpu(spec.fleet.gpu)
    for row in kv["rows"]:
        cells = row["cells"]
        assert _close(_value(cells["bytes_per_token"]), ref.loc[row["key"], "bytes_per_token"])
        assert _close(_value(cells["bytes_per_sequence"]), ref.loc[row["key"], "bytes_per_sequence"])
        fits = None
        for tp in valid_tp_degrees(load_model(row["key"]), limit=gpu.gpus_per_server):
            try:
                fits = (
                    tp,
                    fleetsim.memory_plan(
                        row["key"],
                        gpu.name,
                        tp=tp,
                        weight_dtype=spec.weight_dtype,
                        kv=spec.kv_cache,
                        context_tokens=4096,
                    ).max_concurrent_sequences,
                )
                break
            except CapacityError:
                continue
        if fits is None:
            assert cells["tp"]["text"] == "does not fit" and cells["max_concurrent_sequences"]["value"] is None
        else:
            assert (_value(cells["tp"]), _value(cells["max_concurrent_sequences"])) == fits
    # GPT-2 XL: 300 KiB per token; DeepSeek V3 (MLA): 68.6 KiB (the articles' 300 KB -> 69 KB).
    if spec.kv_cache.key_dtype == spec.kv_cache.value_dtype == "bf16":
        assert _value(kv["rows"][models.index("gpt2-xl")]["cells"]["bytes_per_token"]) == 307200
        assert _value(kv["rows"][models.index("deepseek-v3")]["cells"]["bytes_per_token"]) == 70272

    expected = {
        "facility.pue": spec.facility.pue,
        "cost.electricity_usd_per_kwh": spec.cost.electricity_usd_per_kwh,
        "facility.rack_power_kw": spec.facility.rack_power_kw,
        "slo.ttft_s": spec.slo.ttft_s,
        "slo.tpot_s": spec.slo.tpot_s,
        "slo.attainment_target": spec.slo.attainment_target,
        "run.duration_s": spec.run.duration_s,
        "model.total_params_b": load_model(spec.model).total_params / 1e9,
    }
    rows = {r["key"]: r for r in report.tables["t-assumptions"]["rows"]}
    for g in {k.split(".")[1] for k in rows if k.startswith("gpu.")}:
        gs = load_gpu(g)
        expected.update(
            {
                f"gpu.{g}.memory_gb": gs.memory_bytes / 1e9,
                f"gpu.{g}.tdp_w": gs.tdp_w,
                f"gpu.{g}.hbm_tb_per_s": gs.hbm_bandwidth_bytes_per_s / 1e12,
                f"gpu.{g}.rental_usd_per_gpu_hour": spec.cost.rental_usd_per_gpu_hour or gs.rental_usd_per_gpu_hour,
            }
        )
        assert rows[f"gpu.{g}.rental_usd_per_gpu_hour"]["cells"]["source"]["text"].strip()
    for key, row in rows.items():
        c = row["cells"]["value"]
        if c["value"] is not None and key in expected:
            assert _close(_value(c), expected[key]), key
        assert row["cells"]["source"]["text"].strip(), f"assumption {key} has no source"
    assert {"facility.pue", "cost.electricity_usd_per_kwh", f"gpu.{spec.fleet.gpu}.rental_usd_per_gpu_hour"} <= set(
        rows
    )
    assert "Uptime" in rows["facility.pue"]["cells"]["source"]["text"]


# --------------------------------------------------------------------------- the three sources
def test_scenario_report_is_self_contained_and_every_table_number_matches_the_runs(tmp_path):
    # The shipped scenario under a name that is markup: it must render as text.
    import yaml

    data = yaml.safe_load(SCENARIO.read_text())
    data["name"] = "<script>alert(1)</script>"
    scenario = tmp_path / "h100_llama3.yaml"
    scenario.write_text(yaml.safe_dump(data))
    out = write_report(
        scenario, tmp_path / "report.html", overrides=SHORT, study_options=STUDY, csv_dir=tmp_path / "csv"
    )
    report = _check_structure_and_text(out)
    html = out.read_text()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert report.tables["t-comparison"]["source"] == "growth"
    assert "t-bill" in report.tables  # rent and own side by side
    assert [r["key"] for r in report.tables["t-sens-load"]["rows"]] == ["1", "1.25", "1.5", "2"]
    sims = _Sims(scenario)
    _check_summary_tables(report, sims, SHORT)
    ref = json.loads(report.tables["t-run"]["overrides"])
    spec = fleetsim.load_scenario(scenario, {**SHORT, **ref})
    flat = sims.flat({**SHORT, **ref})
    _check_derived_tables(report, spec, flat)
    _check_kv_and_assumptions(report, fleetsim.load_scenario(scenario, SHORT))

    # The lead: a right-sized fleet (fewer than the scenario's 4 H100), two GPU types compared.
    options = {r["key"]: r for r in report.tables["t-options-gpu"]["rows"]}
    assert set(options) == {"h100-sxm", "h200"}
    best = report.tables["t-slide"]["rows"][0]
    assert best["key"] == "best"
    gpus = int(_value(options[ref["fleet.gpu"]]["cells"]["gpus"]))
    assert ref["fleet.replicas"] * ref["fleet.tp"] == gpus
    if ref["fleet.gpu"] == "h100-sxm":
        assert gpus < 4
    assert html.index("Rent ") < html.index("Summary for a slide")
    # $/Mtok of the recommended fleet, by hand from two independent runs (seeds 42, 43): the rental
    # price x GPUs (RunPod per-GPU offers, catalog/offers.yaml) over the tokens each run served.
    price = {"h100-sxm": 2.69, "h200": 3.59}[ref["fleet.gpu"]]
    per_seed = []
    for seed in (42, 43):
        f = sims.flat({**SHORT, **ref, "run.seed": seed})
        tps = f["throughput.output_tokens_per_s"] + f["throughput.input_tokens_per_s"]
        per_seed.append(price * gpus * 1e6 / (tps * 3600))
    row = options[ref["fleet.gpu"]]["cells"]
    assert _close(_value(row["usd_per_million_tokens"]), sum(per_seed) / 2)
    lo, hi = _value(row["usd_per_million_tokens_lo"]), _value(row["usd_per_million_tokens_hi"])
    assert lo < min(per_seed) <= max(per_seed) < hi  # t(0.975, 1) = 12.7: wide with two seeds
    rent_own = {r["key"]: r["cells"] for r in report.tables["t-rent-own"]["rows"]}
    assert _value(rent_own[ref["fleet.gpu"]]["rental_usd_per_million_tokens"]) > 0
    assert _value(rent_own[ref["fleet.gpu"]]["owned_usd_per_million_tokens"]) > 0
    # Sources are citations (title, URL or path, date), not keys.
    assert 'id="sources"' in html and "price_runpod_2026" not in html and "deploybase.ai" in html
    # Every table is a CSV too.
    assert {p.stem for p in (tmp_path / "csv").glob("*.csv")} == set(report.tables) | {"t-assumptions"}


def test_sweep_report_tables_match_points_parquet(tmp_path):
    grid = {"fleet.replicas": [1, 2], "workload.arrival.rate_per_s": [10, 40], "model": ["llama-3-8b", "llama-3-70b"]}
    df = run_sweep(SCENARIO, grid, tmp_path / "sweep", overrides=SHORT, workers=1, progress=False)
    out = write_report(tmp_path / "sweep", tmp_path / "sweep.html")
    report = _check_structure_and_text(out)
    points = pd.read_parquet(tmp_path / "sweep" / "points.parquet").set_index("point_id")
    comp = report.tables["t-comparison"]
    assert comp["source"] == "points" and [r["key"] for r in comp["rows"]] == df["point_id"].tolist()
    checked = 0
    for tid, t in report.tables.items():
        if t["source"] != "points":
            continue
        for row in t["rows"]:
            for col, c in row["cells"].items():
                if c["value"] is not None:
                    assert _close(_value(c), points.loc[row["key"], col]), (tid, row["key"], col)
                    checked += 1
    assert checked > 40
    # The failed points (70B does not fit one H100) are shown with their error.
    failed = [r for r in comp["rows"] if r["cells"]["status"]["text"] == "error"]
    assert len(failed) == 4 and all("does not fit" in r["cells"]["error"]["text"] for r in failed)
    # The reference run is the recommended point, re-simulated.
    spec = fleetsim.load_scenario(SCENARIO, SHORT)
    sims = _Sims(spec)
    _check_summary_tables(report, sims, {})
    ref_overrides = json.loads(report.tables["t-run"]["overrides"])
    _check_derived_tables(report, fleetsim.load_scenario(spec, ref_overrides), sims.flat(ref_overrides))
    _check_kv_and_assumptions(report, spec)


def test_plan_report_tables_match_plan_json(tmp_path):
    load = {"run.duration_s": 30, "workload.arrival.rate_per_s": 40}
    plan_fleet(SCENARIO, ["h100-sxm"], overrides=load, out_dir=tmp_path / "plan", progress=False, tp_options=[1, 2])
    out = write_report(tmp_path / "plan", tmp_path / "plan.html")
    report = _check_structure_and_text(out)
    assert "fig-search" in report.ids
    data = json.loads((tmp_path / "plan" / "plan.json").read_text())
    rows = {r["gpu"]: r for r in data["rows"]}
    for tid in ("t-comparison", "t-power"):
        t = report.tables[tid]
        assert t["source"] == "plan"
        for row in t["rows"]:
            for col, c in row["cells"].items():
                if c["value"] is not None:
                    assert _close(_value(c), rows[row["key"]][col]), (tid, row["key"], col)
    for row in report.tables["t-options"]["rows"]:
        for col, c in row["cells"].items():
            if c["value"] is not None:
                assert _close(_value(c), data["options"][int(row["key"])][col])
    assert data["recommendation"] in out.read_text()
    spec = fleetsim.load_scenario(tmp_path / "plan" / "scenario.yaml")
    sims = _Sims(spec)
    _check_summary_tables(report, sims, {})
    best = rows["h100-sxm"]
    assert json.loads(report.tables["t-run"]["overrides"])["fleet.replicas"] == best["replicas"]
    ref = json.loads(report.tables["t-run"]["overrides"])
    _check_derived_tables(report, fleetsim.load_scenario(spec, ref), sims.flat(ref))


def test_report_rejects_what_it_cannot_read(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        write_report(tmp_path / "nope.yaml", tmp_path / "r.html")
    with pytest.raises(SpecError, match="neither a plan directory"):
        write_report(tmp_path, tmp_path / "r.html")
    r = subprocess.run(
        [sys.executable, "-m", "fleetsim.cli", "report", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and r.stderr.startswith("error: report:") and "Traceback" not in r.stderr


# --------------------------------------------------------------------------- a real browser
def _chromium():
    from fleetsim.report.pdf import find_browser

    return find_browser()


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="no Chromium found (chromium, chromium-browser, google-chrome)")
def test_report_renders_in_headless_chromium_without_console_errors_and_prints_to_pdf(tmp_path):
    out = tmp_path / "report.html"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "fleetsim.cli",
            "report",
            str(SCENARIO),
            "-o",
            str(out),
            "--pdf",
            "--gpus",
            "h100-sxm,h200",
            "--seeds",
            "2",
            "--set",
            "run.duration_s=20",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    pdf = out.with_suffix(".pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 50_000
    shot = tmp_path / "report.png"
    r = subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--hide-scrollbars",
            "--window-size=1280,4000",
            f"--screenshot={shot}",
            out.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert shot.is_file() and shot.stat().st_size > 50_000, r.stderr[-2000:]
    console = [line for line in r.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert console == []
    failed = [line for line in r.stderr.splitlines() if "net::ERR" in line or "Failed to load" in line]
    assert failed == []


def test_an_autoscaled_scenario_reports_its_own_bill_beside_the_fixed_fleets(tmp_path):
    # The shipped autoscaled day, compressed to half an hour: the plan sizes a fixed fleet (its
    # autoscaler left out); the scenario's own autoscaled fleet is billed by its instances'
    # lifetimes in a second table, every cell one path of an independent run's summary.
    from fleetsim.report.bill_table import bill_paths

    day = ROOT / "scenarios" / "h100_llama3_autoscaled_day.yaml"
    half_hour = {"run.duration_s": 1800, "workload.arrival.period_s": 1800, "workload.arrival.peak_time_s": 1000}
    out = write_report(
        day,
        tmp_path / "r.html",
        overrides=half_hour,
        study_options={"gpus": ["h100-sxm"], "seeds": 1, "tp_options": [4]},
    )
    report = _check_structure_and_text(out)
    assert {"t-bill", "t-bill-written"} <= set(report.tables)
    own = report.tables["t-bill-written"]
    flat = pd.json_normalize(fleetsim.simulate(day, half_hour).summary, sep=".").iloc[0].to_dict()
    assert flat["autoscaling.scale_ups"] >= 0 and "bill.rent_usd.on_demand_usd" in flat
    for row in own["rows"]:
        for col, path in bill_paths(row["key"]).items():
            c = row["cells"][col]
            if path is not None:
                assert _close(_value(c), flat[path]), (row["key"], col)
