"""Admission control (token bucket, queue limit, timeout), class priorities and preemption order,
and goodput of a request table, against hand counts."""

import math

import numpy as np
import pandas as pd
import pytest

from fleetsim.admission import Admission, ClassPolicies, TokenBucket, goodput, slo_met
from fleetsim.errors import SpecError
from fleetsim.metrics import slo_mask
from fleetsim.spec.dynamics import AdmissionSpec, ClassPolicySpec, TokenBucketSpec


def test_token_bucket_burst_then_rate():
    bucket = TokenBucket(TokenBucketSpec(rate_per_s=2.0, burst=3.0))
    assert [bucket.admit(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.admit(0.5)  # 0.5 s x 2/s = 1 token
    assert not bucket.admit(0.75)  # 0.5 token
    assert bucket.admit(1.0)  # 0.5 + 0.25 x 2 = exactly 1


def test_token_bucket_admits_burst_plus_rate_times_t_under_saturation():
    # Arrivals every 0.01 s for 100 s against 3/s with a burst of 5: the bucket never refills to
    # its cap, so exactly 5 + 3 x 100 = 305 are admitted (exact arithmetic: the 305th token is
    # complete at t = 100 exactly, when the last arrival comes).
    bucket = TokenBucket(TokenBucketSpec(rate_per_s=3.0, burst=5.0))
    assert sum(bucket.admit(k / 100) for k in range(10001)) == 305


def test_token_bucket_refuses_time_going_back():
    bucket = TokenBucket(TokenBucketSpec(rate_per_s=1.0))
    bucket.admit(5.0)
    with pytest.raises(SpecError, match="before the last request"):
        bucket.admit(4.0)


def test_queue_limit_is_checked_before_the_bucket_and_timeout():
    door = Admission(AdmissionSpec(queue_timeout_s=30.0, token_bucket=TokenBucketSpec(rate_per_s=1.0)), max_queue=2)
    assert door.check(0.0, queued=2) == "queue_full"
    assert door.check(0.0, queued=1) is None  # the one token was still there
    assert door.check(0.5, queued=0) == "rate_limited"
    assert door.deadline_s(10.0) == 40.0
    assert door.expired(10.0, 40.0) and not door.expired(10.0, 39.9)
    assert Admission(AdmissionSpec()).deadline_s(1.0) == math.inf


POLICIES = ClassPolicies(
    [
        ClassPolicySpec(name="interactive", priority=10, ttft_s=0.5, tpot_s=0.05),
        ClassPolicySpec(name="batch", priority=1, ttft_s=60.0),
    ],
    default_ttft_s=2.0,
    default_tpot_s=0.1,
)


def test_priority_order_and_preemption_order():
    waiting = [("batch", 1.0, 0), ("interactive", 3.0, 1), ("other", 0.5, 2), ("interactive", 2.0, 3)]
    order = sorted(waiting, key=lambda w: POLICIES.schedule_key(*w))
    assert [w[2] for w in order] == [3, 1, 0, 2]  # interactive by arrival, then batch, then priority 0
    running = [("interactive", 5.0, 10), ("batch", 1.0, 11), ("batch", 4.0, 12), ("other", 2.0, 13)]
    # Lowest priority first ('other' 0), then batch newest first, interactive last.
    assert POLICIES.preemption_order(running) == [13, 12, 11, 10]
    assert POLICIES.of("batch").tpot_s == 0.1  # not set: the scenario's
    with pytest.raises(SpecError, match="listed twice"):
        ClassPolicies([ClassPolicySpec(name="a"), ClassPolicySpec(name="a")], 1.0, 1.0)


def table() -> pd.DataFrame:
    rows = [
        # class, arrival, status, output tokens, ttft, tpot
        ("interactive", 0.0, "completed", 100, 0.4, 0.04),  # met
        ("interactive", 1.0, "completed", 200, 0.6, 0.04),  # TTFT missed
        ("interactive", 2.0, "completed", 1, 0.3, np.nan),  # met (one token: no TPOT)
        ("interactive", 3.0, "rejected", 50, np.nan, np.nan),
        ("batch", 0.5, "completed", 1000, 30.0, 0.09),  # met (TPOT default 0.1)
        ("batch", 1.5, "completed", 500, 30.0, 0.2),  # TPOT missed
        ("batch", 9.0, "in_flight", 700, 5.0, np.nan),
    ]
    df = pd.DataFrame(rows, columns=["class", "arrival_s", "status", "output_tokens", "ttft_s", "tpot_s"])
    df["class"] = df["class"].astype("category")
    df["status"] = pd.Categorical(df["status"], categories=["completed", "rejected", "in_flight"])
    return df


def test_goodput_by_hand():
    g = goodput(table(), POLICIES)
    assert g["by_class"]["interactive"] == {
        "arrived": 4,
        "completed": 3,
        "rejected": 1,
        "met": 2,
        "output_tokens": 301,
        "goodput_tokens": 101,
        "goodput_tokens_per_s": None,
    }
    assert g["by_class"]["batch"]["goodput_tokens"] == 1000
    assert g["total"]["goodput_tokens"] == 1101 and g["total"]["arrived"] == 7
    w = goodput(table(), POLICIES, window_s=(0.0, 2.0))  # arrivals 0, 0.5, 1.0, 1.5
    assert w["total"]["arrived"] == 4 and w["total"]["goodput_tokens"] == 1100
    assert w["total"]["goodput_tokens_per_s"] == 550.0


def test_one_class_agrees_with_the_run_summary_mask():
    df = table()
    flat = ClassPolicies([], default_ttft_s=1.0, default_tpot_s=0.05)
    assert slo_met(df, flat).tolist() == slo_mask(df, 1.0, 0.05).tolist()
