"""Multi-turn sessions: each prompt is the conversation so far plus a new message; the means over
requests against the closed form; the random stream of a workload's other draws unchanged; trace
session_id/turn columns."""

import numpy as np
import pytest
from pydantic import ValidationError

from fleetsim.errors import SpecError
from fleetsim.sessions import conversation_tokens, session_mean_lengths, turns_moments
from fleetsim.spec.workload import EmpiricalLength, UniformLength, WorkloadSpec
from fleetsim.workload import generate_requests, load_trace, mean_arrival_rate_per_s, mean_lengths


def chat(session=None, **lengths):
    c = {
        "name": "chat",
        "input_tokens": lengths.get("input_tokens", {"kind": "fixed", "tokens": 100}),
        "output_tokens": lengths.get("output_tokens", {"kind": "fixed", "tokens": 50}),
        "shared_prefix_tokens": lengths.get("shared_prefix_tokens", 0),
    }
    if session is not None:
        c["session"] = session
    return c


def test_hand_case_prompt_grows_by_the_conversation():
    session = {"turns": {"kind": "fixed", "tokens": 3}, "think_time": {"kind": "fixed", "value_s": 10}}
    spec = WorkloadSpec(arrival={"kind": "offline", "requests": 4}, classes=[chat(session, shared_prefix_tokens=20)])
    b = generate_requests(spec, np.random.default_rng(0))
    assert len(b) == 12
    order = np.lexsort((b.turn, b.session_id))
    # turn prompts: 100; 100 + 50 + 100; 250 + 50 + 100
    assert b.input_tokens[order].tolist() == [100, 250, 400] * 4
    assert b.arrival_s[order].tolist() == [0.0, 10.0, 20.0] * 4
    assert b.session_id[order].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert b.turn[order].tolist() == [0, 1, 2] * 4
    assert conversation_tokens(b)[order].tolist() == [0, 150, 300] * 4
    assert (b.shared_prefix_tokens == 20).all()
    assert np.all(np.diff(b.arrival_s) >= 0)


def test_means_match_the_closed_form():
    session = {"turns": {"kind": "uniform", "min_tokens": 1, "max_tokens": 5}}
    spec = WorkloadSpec(
        arrival={"kind": "offline", "requests": 20_000},
        classes=[
            chat(
                session,
                input_tokens={"kind": "uniform", "min_tokens": 10, "max_tokens": 90},
                output_tokens={"kind": "uniform", "min_tokens": 1, "max_tokens": 199},
            ),
            {"name": "single", "weight": 1.0, **{k: chat()[k] for k in ("input_tokens", "output_tokens")}},
        ],
    )
    # E[T] = 3, E[T^2] = (1 + 4 + 9 + 16 + 25) / 5 = 11 -> E[T (T-1) / 2] = 4; mx = 50, my = 100
    assert turns_moments(UniformLength(min_tokens=1, max_tokens=5)) == (3.0, 11.0)
    assert turns_moments(EmpiricalLength(values=(1, 4), weights=(3, 1))) == (1.75, 4.75)
    per_arrival, prompt, output = session_mean_lengths(spec)
    assert per_arrival == pytest.approx(0.5 * 3 + 0.5 * 1)
    assert prompt == pytest.approx((0.5 * (50 * 3 + 150 * 4) + 0.5 * 100) / 2)
    assert output == pytest.approx((0.5 * 100 * 3 + 0.5 * 50) / 2)
    assert mean_lengths(spec) == pytest.approx((prompt, output))
    b = generate_requests(spec, np.random.default_rng(3))
    assert len(b) / 20_000 == pytest.approx(per_arrival, rel=0.02)
    stderr = b.input_tokens.std() / np.sqrt(len(b))
    assert b.input_tokens.mean() == pytest.approx(prompt, abs=6 * stderr)
    poisson = spec.model_copy(
        update={
            "arrival": WorkloadSpec.model_validate(
                {"arrival": {"kind": "poisson", "rate_per_s": 4.0}, "classes": [chat()]}
            ).arrival
        }
    )
    assert mean_arrival_rate_per_s(poisson) == pytest.approx(4.0 * per_arrival)


def test_other_draws_unchanged_by_sessions():
    """Sessions draw after everything a workload without them draws: the opening turns of a
    session workload are exactly the requests of the same workload without sessions."""
    lengths = {"input_tokens": {"kind": "lognormal", "mean_tokens": 300, "sigma": 1.0}}
    two = [chat(**lengths), {**chat(**lengths), "name": "other", "weight": 2.0}]
    plain = WorkloadSpec(arrival={"kind": "poisson", "rate_per_s": 5.0}, classes=two)
    with_sessions = WorkloadSpec(
        arrival={"kind": "poisson", "rate_per_s": 5.0},
        classes=[
            chat(
                {"turns": {"kind": "fixed", "tokens": 4}, "think_time": {"kind": "exponential", "mean_s": 5}}, **lengths
            ),
            two[1],
        ],
    )
    a = generate_requests(plain, np.random.default_rng(11), duration_s=200)
    b = generate_requests(with_sessions, np.random.default_rng(11), duration_s=200)
    first = b.turn == 0
    for col in ("arrival_s", "input_tokens", "output_tokens", "class_index", "shared_prefix_tokens"):
        assert np.array_equal(getattr(a, col), getattr(b, col)[first]), col
    assert (a.session_id == -1).all() and (a.turn == 0).all()
    assert (b.session_id[b.class_index == 1] == -1).all()
    assert len(b) > len(a) and b.arrival_s.max() <= 200


def test_trace_session_columns(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("arrival_s,input_tokens,output_tokens,session_id,turn\n0,10,5,7,0\n1,25,5,7,1\n0.5,8,2,9,0\n")
    t = load_trace(path)
    assert t.session_id.tolist() == [7, 9, 7] and t.turn.tolist() == [0, 0, 1]
    spec = WorkloadSpec(arrival={"kind": "trace", "path": str(path)})
    b = generate_requests(spec, np.random.default_rng(0))
    assert b.session_id.tolist() == [7, 9, 7] and conversation_tokens(b).tolist() == [0, 0, 15]
    plain = tmp_path / "p.csv"
    plain.write_text("arrival_s,input_tokens,output_tokens\n0,10,5\n")
    assert load_trace(plain).session_id is None
    assert generate_requests(
        WorkloadSpec(arrival={"kind": "trace", "path": str(plain)}), np.random.default_rng(0)
    ).session_id.tolist() == [-1]
    one = tmp_path / "one.csv"
    one.write_text("arrival_s,input_tokens,output_tokens,turn\n0,10,5,0\n")
    with pytest.raises(SpecError, match="column turn needs column session_id too"):
        load_trace(one)
    bad = tmp_path / "bad.csv"
    bad.write_text("arrival_s,input_tokens,output_tokens,session_id,turn\n0,10,5,x,0\n")
    with pytest.raises(SpecError, match="row 1, column session_id: not a whole number >= 0"):
        load_trace(bad)


def test_sessions_need_an_open_loop_arrival():
    with pytest.raises(ValidationError, match="sessions open on an open-loop arrival"):
        WorkloadSpec(arrival={"kind": "closed", "users": 4}, classes=[chat({"turns": {"kind": "fixed", "tokens": 2}})])
    with pytest.raises(ValidationError):
        WorkloadSpec(
            arrival={"kind": "offline", "requests": 1},
            classes=[chat({"turns": {"kind": "lognormal", "mean_tokens": 3, "sigma": 1}})],
        )
