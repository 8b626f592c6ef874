"""The per-request table of a fleet in pods, merged from the pods' stored columns
(RunRecord._request_columns) in little more memory than the table itself.

Each merged column is allocated once, in the table's dtype, and filled pod by pod, each pod's
column released as soon as it is copied; the rows are placed by the fleet's request order (an
open loop: pod k's rows are the requests assigned to it, in order) or, for a closed loop, pod by
pod and then put in arrival order by one stable argsort. The latencies are derived afterwards,
over the merged columns, by the same element-wise arithmetic each pod would have done
(run_record.request_table): the table is the one the pods' tables concatenated and sorted make,
to the bit, without the copies a DataFrame concat and sort take.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fleetsim.sim.run_record import TABLE_COLUMNS, request_table

SESSION_COLUMNS = ("session_id", "turn")  # only pods whose traffic has sessions send them


def merge_requests(
    pods: list[dict[str, np.ndarray]], offsets: np.ndarray, assign: np.ndarray | None, classes: list[str]
) -> pd.DataFrame:
    """The fleet's request table from each pod's stored columns (emptied as they are copied).
    `offsets`: each pod's first replica number; `assign`: each request's pod in the fleet's
    order (None: a closed loop, rows ordered by arrival, ties pod by pod)."""
    sizes = [len(cols["arrival_s"]) for cols in pods]
    n = sum(sizes)
    with_sessions = [SESSION_COLUMNS[0] in cols for cols in pods]
    # Sessions in some pods only (a pod without any): as a DataFrame concat gives them, float64
    # with NaN for the others, after the latencies unless the first pod has them.
    partial = any(with_sessions) and not all(with_sessions)
    merged: dict[str, np.ndarray] = {}
    start = 0
    for k, cols in enumerate(pods):
        rows: np.ndarray | slice = np.flatnonzero(assign == k) if assign is not None else slice(start, start + sizes[k])
        start += sizes[k]
        replica = cols.pop("replica")
        cols["replica"] = np.where(replica >= 0, replica + offsets[k], -1)
        del replica
        for name in list(cols):
            values = cols.pop(name)
            if name not in merged:
                merged[name] = _column(name, values.dtype, n, partial and name in SESSION_COLUMNS)
            merged[name][rows] = values
        del values, rows
    if assign is None:
        order = np.argsort(merged["arrival_s"], kind="stable")
        for name in merged:
            merged[name] = merged[name][order]
        del order
    late = {name: merged.pop(name) for name in SESSION_COLUMNS if partial}
    table = request_table(merged, classes)
    at = table.columns.get_loc("requeues") + 1 if with_sessions[0] else len(table.columns)
    for i, (name, values) in enumerate(late.items()):
        table.insert(at + i, name, values)
    table.index = pd.RangeIndex(n, name="request_id")
    return table


def _column(name: str, pod_dtype: np.dtype, n: int, partial: bool) -> np.ndarray:
    if partial:
        return np.full(n, np.nan)
    dtype = TABLE_COLUMNS.get(name)
    return np.empty(n, dtype=pod_dtype if dtype is None else dtype)
