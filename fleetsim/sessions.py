"""Multi-turn sessions: a request class with ``session`` opens a conversation at each arrival,
and its later turns follow, each prompt the conversation so far plus a new message.

For a session of T turns with new messages x_0..x_{T-1} and answers y_0..y_{T-1}:

    prompt_j = x_0 + y_0 + ... + x_{j-1} + y_{j-1} + x_j,   arrival_j = arrival_0 + g_1 + ... + g_j

(g the think times). The conversation part of prompt_j (what a prefix cache may already hold:
turn j-1's prompt and answer) is ``conversation_tokens``. Means over requests, for a class of
mean message mx, mean answer my and turns T:

    E[prompt] = (mx E[T] + (mx + my) E[T (T - 1) / 2]) / E[T],   requests per arrival = E[T]

Draws come after every draw a workload without sessions makes, from the same generator, so a
workload with no session class draws exactly what it did before. Pure numpy; no simpy.
"""

from __future__ import annotations

import numpy as np

from fleetsim.lengths import _prefix_column, _sample_lengths, length_mean
from fleetsim.spec.base import MAX_TOKENS
from fleetsim.spec.workload import EmpiricalLength, FixedLength, UniformLength, WorkloadSpec
from fleetsim.workload import RequestBatch

__all__ = ["conversation_tokens", "expand_sessions", "session_mean_lengths", "turns_moments"]


def turns_moments(turns: FixedLength | UniformLength | EmpiricalLength) -> tuple[float, float]:
    """(E[T], E[T^2]) of a turn-count distribution, exactly."""
    if isinstance(turns, FixedLength):
        return float(turns.tokens), float(turns.tokens) ** 2
    if isinstance(turns, UniformLength):
        values = np.arange(turns.min_tokens, turns.max_tokens + 1, dtype=np.float64)
        return float(values.mean()), float((values**2).mean())
    values = np.asarray(turns.values, dtype=np.float64)
    p = np.ones(len(values)) if turns.weights is None else np.asarray(turns.weights, dtype=np.float64)
    p = p / p.sum()
    return float(p @ values), float(p @ values**2)


def session_mean_lengths(spec: WorkloadSpec) -> tuple[float, float, float]:
    """(requests per arrival, mean prompt tokens, mean output tokens) over the requests of a
    workload whose classes may open sessions (prompt growth included, the 10M cap ignored)."""
    per_arrival = 0.0
    prompt = 0.0
    output = 0.0
    for w, c in zip(spec.class_weights, spec.classes):
        assert c.input_tokens is not None and c.output_tokens is not None  # sessions are open-loop classes
        mx, my = length_mean(c.input_tokens), length_mean(c.output_tokens)
        if c.session is None:
            turns, pairs = 1.0, 0.0
        else:
            turns, t2 = turns_moments(c.session.turns)
            pairs = 0.5 * (t2 - turns)  # E[T (T - 1) / 2]
        per_arrival += w * turns
        prompt += w * (mx * turns + (mx + my) * pairs)
        output += w * my * turns
    return per_arrival, prompt / per_arrival, output / per_arrival


def _think_gaps(think, rng: np.random.Generator, n: int) -> np.ndarray:
    if think is None:
        return np.zeros(n)
    if think.kind == "fixed":
        return np.full(n, float(think.value_s))
    return rng.exponential(think.mean_s, n)


def _within(v: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Inclusive running sum of v over each session's later turns (`first`: the index of each
    element's session start in v)."""
    total = np.cumsum(v)
    return total - (total - v)[first]


def expand_sessions(
    spec: WorkloadSpec,
    rng: np.random.Generator,
    arrival_s: np.ndarray,
    inputs: np.ndarray,
    outputs: np.ndarray,
    class_index: np.ndarray,
    duration_s: float | None,
    max_requests: int | None,
) -> RequestBatch:
    """The drawn arrivals, each of a session class opening a session, with the later turns added,
    sorted by arrival (stable: a session's turns in order), cut at duration_s and max_requests."""
    n = len(arrival_s)
    session_id = np.full(n, -1, dtype=np.int64)
    opened = np.zeros(n, dtype=bool)
    for k, c in enumerate(spec.classes):
        if c.session is not None:
            opened |= class_index == k
    session_id[opened] = np.arange(int(opened.sum()), dtype=np.int64)
    columns = {
        "arrival_s": [arrival_s],
        "input_tokens": [inputs],
        "output_tokens": [outputs],
        "class_index": [class_index],
        "session_id": [session_id],
        "turn": [np.zeros(n, dtype=np.int32)],
    }
    for k, c in enumerate(spec.classes):
        if c.session is None:
            continue
        rows = np.flatnonzero(class_index == k)
        turns = _sample_lengths(c.session.turns, rng, len(rows))
        extra = turns - 1
        m = int(extra.sum())
        owner = np.repeat(rows, extra)  # the opening row of each later turn
        first = np.repeat(np.cumsum(extra) - extra, extra)  # index of its session's turn 1 in this block
        turn = (np.arange(m) - first + 1).astype(np.int32)
        assert c.input_tokens is not None and c.output_tokens is not None  # an open-loop class has both
        x = _sample_lengths(c.input_tokens, rng, m)
        y = _sample_lengths(c.output_tokens, rng, m)
        gaps = _think_gaps(c.session.think_time, rng, m)
        # prompt_j = x_0 + y_0 + (x_1 + ... + x_j) + (y_1 + ... + y_{j-1})
        prompt = inputs[owner] + outputs[owner] + _within(x, first) + _within(y, first) - y
        cum_g = _within(gaps, first)
        columns["arrival_s"].append(arrival_s[owner] + cum_g)
        columns["input_tokens"].append(np.minimum(prompt, MAX_TOKENS).astype(np.int64))
        columns["output_tokens"].append(y.astype(np.int64))
        columns["class_index"].append(np.full(m, k, dtype=np.int32))
        columns["session_id"].append(session_id[owner])
        columns["turn"].append(turn)
    full = {name: np.concatenate(parts) for name, parts in columns.items()}
    order = np.argsort(full["arrival_s"], kind="stable")
    keep = len(order)
    if duration_s is not None:
        keep = int(np.searchsorted(full["arrival_s"][order], duration_s, side="right"))
    if max_requests is not None:
        keep = min(keep, max_requests)
    order = order[:keep]
    out = {name: values[order] for name, values in full.items()}
    prefix = np.minimum(_prefix_column(spec, out["class_index"]), out["input_tokens"] - 1)
    return RequestBatch(
        out["arrival_s"],
        out["input_tokens"],
        out["output_tokens"],
        out["class_index"],
        prefix,
        session_id=out["session_id"],
        turn=out["turn"],
    )


def conversation_tokens(batch: RequestBatch) -> np.ndarray:
    """Tokens of each prompt that are the conversation so far: the previous turn's prompt and
    answer (0 for a first turn or a request outside a session, and when the previous turn is not
    in the batch)."""
    n = len(batch)
    out = np.zeros(n, dtype=np.int64)
    sid = batch.session_id
    turn = batch.turn
    assert sid is not None and turn is not None
    rows = np.flatnonzero(sid >= 0)
    if not len(rows):
        return out
    order = rows[np.lexsort((turn[rows], sid[rows]))]
    same = (sid[order][1:] == sid[order][:-1]) & (turn[order][1:] == turn[order][:-1] + 1)
    cur, prev = order[1:][same], order[:-1][same]
    out[cur] = batch.input_tokens[prev] + batch.output_tokens[prev]
    return out
