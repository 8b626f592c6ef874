"""A fleet in pods: `fleet.pods` groups of replicas, each behind its own router (several gateways,
as large fleets are deployed), each run in its own process and merged.

How arrivals are split: the fleet's arrivals are generated once, from the run's seed, as a
one-pod run would generate them; each request then goes to pod k with probability
replicas_k / replicas (pods as equal as whole replicas allow: sizes differ by at most one), drawn
from a generator seeded by (seed, "pods"). A closed loop splits its users the same way, user u to
pod u mod pods. Each pod runs with its own generator, seeded by (seed, pod), for what it draws
itself (cached prompts, random routing, closed-loop lengths and think times). Each pod draws the
fleet's arrivals again itself and keeps its share, so the parent holds only each request's pod
during the run (a trace's shares are sent instead: its file may not be on a Dask worker).

How results are merged: the request table is the pods' tables in the fleet's request order (a
closed loop: pod by pod, then by arrival), replica numbers offset by the pods before, built from
the pods' stored columns in little more memory than the table (fleetsim.sim.request_merge); the
replica table concatenated; time integrals summed; the ITL histograms merged; the time series summed
sample by sample (pods sample at the same times; a pod that has finished holds its meters, its
replicas idle). A pod that drains early idles until the fleet's last pod is done: its idle
energy up to then is added. max_running and max_queued are sums of the pods' maxima (an upper
bound of the fleet's; exact with one pod), rejections per class and reason summed. An admission
token bucket is per gateway: each pod's refills at its share (replicas_k / replicas) of the
fleet's rate, with that share of the burst (at least 1). fleet.pods = 1 never comes here.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from fleetsim.sim.engine import Engine, RawRun
from fleetsim.sim.queues import merge_rejections
from fleetsim.sim.request_merge import merge_requests
from fleetsim.sketch import LogHistogram
from fleetsim.workload import RequestBatch, generate_requests

POD_SEED_TAG = 0x706F6473  # "pods"


def pod_sizes(replicas: int, pods: int) -> list[int]:
    base, extra = divmod(replicas, pods)
    return [base + (1 if k < extra else 0) for k in range(pods)]


def _pod_scenario(scenario, replicas: int, users: int | None):
    fleet = scenario.fleet.model_copy(update={"replicas": replicas, "pods": 1})
    update: dict = {"fleet": fleet}
    bucket = scenario.admission.token_bucket
    if bucket is not None:
        # Each pod's gateway holds its own bucket: its share of the fleet's rate and burst.
        share = replicas / scenario.fleet.replicas
        pod_bucket = bucket.model_copy(
            update={"rate_per_s": bucket.rate_per_s * share, "burst": max(bucket.burst * share, 1.0)}
        )
        update["admission"] = scenario.admission.model_copy(update={"token_bucket": pod_bucket})
    if users is not None:
        arrival = scenario.workload.arrival.model_copy(update={"users": users})
        update["workload"] = scenario.workload.model_copy(update={"arrival": arrival})
    return scenario.model_copy(update=update)


def _subset(batch: RequestBatch, mask: np.ndarray) -> RequestBatch:
    values = {}
    for f in dataclasses.fields(batch):
        v = getattr(batch, f.name)
        values[f.name] = v[mask] if isinstance(v, np.ndarray) else v
    values["dropped_after_duration"] = 0
    return RequestBatch(**values)


class PodEngine(Engine):
    """A pod's engine: its run keeps the request table's stored columns (request_columns, a third
    smaller than the table, for the parent to merge) and leaves RawRun.requests empty."""

    request_columns: dict[str, np.ndarray]

    def _request_frame(self) -> pd.DataFrame:
        self.request_columns = self._request_columns()
        return pd.DataFrame()


def _run_pod(task) -> tuple[RawRun, dict[str, np.ndarray], float, list[float]]:
    """Worker: one pod's run and its request columns; with its replicas' idle power (W) and KV
    bytes held at the end. An open loop's pod draws the fleet's arrivals again (the same, from the
    run's seed) and keeps its share, unless handed it (a trace: the file may not be on a worker)."""
    scenario, arch, gpu, profile, engine_profile, plan, pod, batch, end_s, sizes = task
    if batch is None and end_s is not None:
        fleet_batch, assign = fleet_arrivals(scenario.workload, scenario.run, sizes)
        batch = _subset(fleet_batch, assign == pod)
        del fleet_batch, assign
    engine = PodEngine(scenario, arch, gpu, profile, plan, engine_profile)
    engine.rng = np.random.default_rng([scenario.run.seed, pod])
    raw = engine.run(batch, end_s)
    idle_w = engine.step_model.power.idle_w * engine.tp
    return raw, engine.request_columns, idle_w, [r.held_bytes() for r in engine.replicas]


def fleet_arrivals(workload, run, sizes: list[int]) -> tuple[RequestBatch, np.ndarray]:
    """The fleet's open-loop arrivals, generated as a one-pod run would, and each request's pod."""
    batch = generate_requests(
        workload, np.random.default_rng(run.seed), duration_s=run.duration_s, max_requests=run.max_requests
    )
    share = np.array(sizes, dtype=np.float64) / sum(sizes)
    assign = np.random.default_rng([run.seed, POD_SEED_TAG]).choice(len(sizes), size=len(batch), p=share)
    return batch, assign.astype(np.min_scalar_type(len(sizes) - 1))


def run_pods(
    scenario, arch, gpu, profile, engine_profile, plan, workers: int | None = None, scheduler: str | None = None
) -> RawRun:
    pods = scenario.fleet.pods
    sizes = pod_sizes(scenario.fleet.replicas, pods)
    wl, run = scenario.workload, scenario.run
    tasks: list[tuple] = []
    assign: np.ndarray | None = None  # each request's pod (an open loop)
    dropped = 0
    if wl.arrival.kind == "closed":
        users = [len(range(k, wl.arrival.users, pods)) for k in range(pods)]
        for k in range(pods):
            sc = _pod_scenario(scenario, sizes[k], users[k])
            tasks.append((sc, arch, gpu, profile, engine_profile, plan, k, None, None, sizes))
    else:
        batch, assign = fleet_arrivals(wl, run, sizes)
        dropped = batch.dropped_after_duration
        if len(batch) == 0:
            from fleetsim.errors import SpecError

            raise SpecError(
                "workload: the arrival process produced no requests in the run; raise run.duration_s or the arrival rate"
            )
        end_s = run.duration_s if run.duration_s is not None else float(batch.arrival_s[-1])
        # The pods draw the arrivals again rather than be sent them: the parent keeps only each
        # request's pod (a trace is sent: its file may not be on a worker).
        shipped = wl.arrival.kind == "trace"
        for k in range(pods):
            sc = _pod_scenario(scenario, sizes[k], None)
            share = _subset(batch, assign == k) if shipped else None
            tasks.append((sc, arch, gpu, profile, engine_profile, plan, k, share, end_s, sizes))
        del batch
    results = _map(tasks, workers, scheduler)
    del tasks  # a trace's shares of the arrivals: not needed for the merge
    classes = [c.name for c in scenario.workload.classes]
    return _merge(results, sizes, assign, classes, dropped)


def _map(tasks, workers: int | None, scheduler: str | None):
    from fleetsim.executors import executor

    ex = executor(scheduler, workers, len(tasks))
    try:
        return ex.map(_run_pod, tasks)
    finally:
        ex.close()


def _merge(results, sizes: list[int], assign: np.ndarray | None, classes: list[str], dropped: int) -> RawRun:
    raws = [r for r, _, _, _ in results]
    end = max(r.simulated_s for r in raws)
    offsets = np.cumsum([0] + sizes[:-1])
    requests = merge_requests([c for _, c, _, _ in results], offsets, assign, classes)
    # replicas: a pod done early idles until the end
    rep_frames = []
    for k, (raw, _, idle_w, held_end) in enumerate(results):
        df = raw.replicas.copy()
        df["replica"] = df["replica"] + offsets[k]
        gap = end - raw.simulated_s
        if gap > 0:
            df["energy_j"] = df["energy_j"] + gap * idle_w
            df["kv_byte_s"] = df["kv_byte_s"] + gap * np.array(held_end)
        rep_frames.append(df)
    replicas = pd.concat(rep_frames, ignore_index=True)
    # time series on the longest pod's sample times
    grid = max((r.timeseries for r in raws), key=len)["time_s"].to_numpy()
    cols = {"time_s": grid}
    total = float(sum(sizes))
    names = ("running", "queued", "kv_used_fraction", "power_w", "gpu_energy_j", "output_tokens")
    for name in names + ("replicas", "replicas_billed"):
        acc = np.zeros(len(grid))
        for k, (raw, _, idle_w, _) in enumerate(results):
            ts = raw.timeseries
            v = np.interp(grid, ts["time_s"].to_numpy(), ts[name].to_numpy(dtype=np.float64))
            if name == "kv_used_fraction":
                v = v * sizes[k] / total
            elif name == "gpu_energy_j":
                v = v + np.maximum(grid - raw.simulated_s, 0.0) * idle_w * sizes[k]
            acc += v
        cols[name] = acc
    timeseries = pd.DataFrame(cols)
    for name in ("running", "queued", "output_tokens", "replicas", "replicas_billed"):
        timeseries[name] = np.rint(timeseries[name]).astype(np.int64)
    itl = LogHistogram(raws[0].itl.since_s, raws[0].itl.until_s)
    for raw in raws:
        itl.merge(raw.itl)
    return RawRun(
        arrivals_end_s=raws[0].arrivals_end_s,
        warmup_s=raws[0].warmup_s,
        itl=itl,
        requests=requests,
        timeseries=timeseries,
        replicas=replicas,
        simulated_s=end,
        running_area=sum(r.running_area for r in raws),
        queued_area=sum(r.queued_area for r in raws),
        max_running=sum(r.max_running for r in raws),
        max_queued=sum(r.max_queued for r in raws),
        trace_dropped_after_duration=dropped,
        rejected_by_reason=merge_rejections([r.rejected_by_reason for r in raws]),
    )
