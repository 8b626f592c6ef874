"""The readable run summary for a terminal."""

import math

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fleetsim.output import summary_null_reasons


def _f(x, fmt="{:,.3f}"):
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else fmt.format(x)


def print_summary(console: Console, result) -> None:
    s = result.summary
    why = summary_null_reasons(s)

    def cost(section: str, key: str, fmt: str) -> str:
        x = s[section][key]
        return _f(x, fmt) if x is not None else f"- ({escape(why.get(f'{section}.{key}', 'undefined'))})"

    sc = result.scenario
    fl = s["fleet"]
    pd = s.get("disaggregation")
    layout = f"{fl['replicas']} replicas, tp={fl['tp']}"
    if pd:  # prefill/decode disaggregated: each pool its own replicas and tp
        layout = " + ".join(f"{pd[r]['replicas']} {r} x tp{pd[r]['tp']}" for r in ("prefill", "decode"))
    console.print(
        f"[bold]{escape(s['scenario'])}[/bold]: {escape(sc.model)} on {fl['gpus']} x {fl['gpu']} "
        f"({layout}), {s['simulated_s']:,.1f} s simulated, seed {s['seed']}"
    )
    cal = s.get("calibration") or {}
    if cal:
        console.print(
            f"calibration: {escape(cal['gpu_profile'])} kernels {escape(cal['gpu_grade'])}; "
            f"{escape(cal['engine_profile'])} engine {escape(cal['engine_grade'])}"
        )
        for w in cal.get("warnings", []):
            console.print(f"[yellow]warning:[/yellow] {escape(w)}")
        for n in cal.get("notes", []):
            console.print(f"note: {escape(n)}")
    win = s.get("window") or {}
    if win.get("warning"):
        console.print(f"[yellow]warning:[/yellow] {escape(win['warning'])}")
    r = s["requests"]
    console.print(
        f"requests: {r['arrived']:,} arrived, {r['completed']:,} completed, "
        f"{r['rejected']:,} rejected, {r['in_flight']:,} in flight"
    )
    if pd:
        x, h = pd["transfer_s"], pd["handoff_s"]
        console.print(
            f"P/D over {escape(pd['link'])}: busy prefill {pd['prefill']['busy_fraction']:.0%}, decode "
            f"{pd['decode']['busy_fraction']:.0%}; KV transfer {pd['transfer_bytes_per_request'] / 1e6:,.1f} MB per "
            f"request, {x['mean'] * 1e3:,.2f} ms mean / {x['p99'] * 1e3:,.2f} ms p99 after the prefill; hand-off "
            f"to decode admission {h['mean'] * 1e3:,.2f} ms mean / {h['p99'] * 1e3:,.2f} ms p99; TTFT at {pd['ttft_at']}"
        )
    t = Table(title="latency (s)")
    for c in ("metric", "mean", "p50", "p90", "p99"):
        t.add_column(c, justify="right" if c != "metric" else "left")
    for name in ("ttft", "tpot", "e2e"):
        d = s["latency_s"][name]
        t.add_row(name, _f(d["mean"], "{:.4f}"), _f(d["p50"], "{:.4f}"), _f(d["p90"], "{:.4f}"), _f(d["p99"], "{:.4f}"))
    console.print(t)
    th, cc, kv = s["throughput"], s["concurrency"], s["kv_cache"]
    t = Table(title="throughput, concurrency, KV cache")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    t.add_row("output tokens/s", _f(th["output_tokens_per_s"], "{:,.0f}"))
    t.add_row("input tokens/s", _f(th["input_tokens_per_s"], "{:,.0f}"))
    t.add_row("requests/s", _f(th["requests_per_s"], "{:,.2f}"))
    t.add_row("mean running / max running", f"{cc['mean_running']:,.1f} / {cc['max_running']:,}")
    t.add_row("max running by memory", f"{cc['max_by_memory']:,}")
    t.add_row("mean queued", _f(cc["mean_queued"], "{:,.2f}"))
    t.add_row("KV bytes per token", _f(kv["bytes_per_token"], "{:,.0f}"))
    cap = kv["capacity_tokens_per_replica"]
    t.add_row("KV capacity per replica (tokens)", "-" if cap is None else f"{cap:,}")
    t.add_row("KV mean utilization", _f(kv["mean_utilization"], "{:.1%}"))
    t.add_row("preemptions", f"{kv['preemptions']:,}")
    pc = s.get("prefix_cache")
    if pc is not None:  # the block prefix cache ran (fleetsim.sim.block_cache)
        t.add_row(
            "prefix-cache hit rate (GPU / host tokens)",
            f"{pc['hit_rate']:.1%} ({pc['gpu_hit_tokens']:,} / {pc['host_hit_tokens']:,})",
        )
        t.add_row(
            "blocks evicted / offloaded (GB) / reload (s)",
            f"{pc['evicted_blocks']:,} / {pc['offloaded_bytes'] / 1e9:,.1f} / {pc['reload_s']:.3f}",
        )
    console.print(t)
    p, c, co, slo = s["power"], s["cooling"], s["cost"], s["slo"]
    t = Table(title="power, cooling, cost")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    t.add_row("GPU mean / peak (W per GPU)", f"{p['gpu_mean_w']:,.0f} / {p['gpu_peak_w']:,.0f}")
    t.add_row("IT / facility mean (kW)", f"{p['it_mean_kw']:,.1f} / {p['facility_mean_kw']:,.1f}")
    t.add_row("IT energy (kWh)", _f(p["energy_kwh"], "{:,.2f}"))
    t.add_row("GPU J per output token", cost("power", "joules_per_output_token", "{:,.3f}"))
    t.add_row("heat load (kW / BTU/h / tons)", f"{c['heat_load_kw']:,.1f} / {c['btu_per_h']:,.0f} / {c['tons']:,.2f}")
    t.add_row("water (L/h)", _f(c["water_l_per_h"], "{:,.1f}"))
    t.add_row("servers / racks", f"{fl['servers']} / {fl['racks']}")
    t.add_row(f"cost ({co['mode']}) $/hour", _f(co["usd_per_hour"], "{:,.2f}"))
    t.add_row("$ per million output tokens", cost("cost", "usd_per_million_output_tokens", "{:,.3f}"))
    t.add_row("$ per million tokens", cost("cost", "usd_per_million_tokens", "{:,.3f}"))
    t.add_row("server wall power mean / peak (kW)", f"{p['server_wall_kw']:,.1f} / {p['server_wall_peak_kw']:,.1f}")
    t.add_row("cooling sized at peak (tons)", f"{c['tons_at_peak']:,.2f}")
    bill = s.get("bill")
    if bill is not None:
        month = bill["month"]
        rent = _f(month.get("on_demand_usd"), "${:,.0f}")
        own = _f(month.get("own_usd"), "${:,.0f}")
        t.add_row("a month at this load: rent (on demand) / own", f"{rent} / {own}")
        t.add_row("a month: facility kWh / kg CO2", f"{month['facility_kwh']:,.0f} / {month['carbon_kg']:,.0f}")
        rent_p, own_p = bill["rent_usd"], bill["own_usd"]
        period = " / ".join(_f(rent_p.get(k), "${:,.2f}") for k in ("on_demand_usd", "reserved_usd", "spot_usd"))
        t.add_row(
            f"this run ({bill['period_s'] / 3600:,.2f} h, {bill['gpu_hours_billed']:,.2f} GPU-h billed): "
            "rent on demand / reserved / spot; own",
            f"{period}; {_f(own_p.get('total_usd'), '${:,.2f}')}",
        )
    auto = s.get("autoscaling")
    if auto is not None:
        t.add_row(
            "autoscaling: replicas min / peak, scale-ups / downs",
            f"{auto['min_replicas']} / {auto['peak_replicas']}, {auto['scale_ups']} / {auto['scale_downs']}",
        )
    failures = s.get("failures")
    if failures is not None:
        without = slo.get("attainment_without_failures")
        t.add_row(
            "failures: outages, requests re-queued, GPU-h down",
            f"{failures['outages']}, {failures['requests_requeued']:,}, {failures['gpu_hours_down']:,.2f}",
        )
        if without is not None:
            t.add_row("SLO attainment with / without failures", f"{slo['attainment']:.1%} / {without:.1%}")
    console.print(t)
    for g in s.get("groups", []):  # a mixed fleet (fleet.groups): one line per group
        console.print(
            f"group {escape(g['name'])}: {g['replicas']} x {escape(g['gpu'])} (tp={g['tp']}, {g['gpus']} GPUs), "
            f"{g['requests_completed']:,} requests, {_f(g['output_tokens_per_s'], '{:,.0f}')} output tok/s, "
            f"{_f(g['gpu_mean_w'], '{:,.0f}')} W per GPU, ${_f(g['usd_per_hour'], '{:,.2f}')}/hour"
        )
    by_class = s.get("classes", {}).get("by_class", {})
    if len(by_class) > 1:
        for name, c in by_class.items():
            rejected = ", ".join(f"{k} {v:,}" for k, v in c.get("rejected_by_reason", {}).items()) or "none"
            console.print(
                f"class {escape(name)} (priority {c['priority']}, TTFT <= {c['ttft_target_s']} s, TPOT <= "
                f"{c['tpot_target_s']} s): SLO met by {_f(c['slo_attainment'], '{:.1%}')} of arrivals, goodput "
                f"{_f(c['goodput_tokens_per_s'], '{:,.0f}')} tok/s, rejected: {rejected}"
            )
    verdict = "[green]met[/green]" if slo["met"] else "[red]missed[/red]"
    q = slo["percentile"]
    targets = (
        "each class's TTFT and TPOT targets"
        if result.scenario.classes
        else f"TTFT <= {slo['ttft_s']} s and TPOT <= {slo['tpot_s']} s per request"
    )
    console.print(
        f"SLO ({targets}): "
        f"attainment {slo['attainment']:.2%} vs target {slo['attainment_target']:.0%}: {verdict}; "
        f"p{q:g} TTFT {_f(slo[f'ttft_p{q:g}_s'], '{:.3f}')} s, p{q:g} TPOT {_f(slo[f'tpot_p{q:g}_s'], '{:.4f}')} s"
    )
