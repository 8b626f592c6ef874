"""What the fuzz tests (tests/test_fuzz_*.py) share: hypothesis settings, the one-line rule, a
hang guard, temporary files.

The examples are derandomized so CI sees the same inputs every run; set FLEETSIM_FUZZ_EXAMPLES
(e.g. 2000) and FLEETSIM_FUZZ_RANDOM=1 to fuzz deeper and wider locally.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import warnings
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from fleetsim.errors import FleetsimError, FleetsimWarning

EXAMPLES = int(os.environ.get("FLEETSIM_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=3000,
    derandomize=not os.environ.get("FLEETSIM_FUZZ_RANDOM"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    database=None,
)
MAX_MESSAGE = 300
HANG_S = 5.0


class Hang(Exception):
    """An input still running after its time limit."""


@contextlib.contextmanager
def time_limit(seconds: float = HANG_S):
    """Fail (not hang) a call that runs past `seconds` (SIGALRM; a no-op where there is none, or
    off the main thread)."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def ring(signum, frame):
        raise Hang(f"still running after {seconds} s")

    try:
        old = signal.signal(signal.SIGALRM, ring)
    except ValueError:  # not the main thread
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def assert_one_line(exc: BaseException) -> str:
    """The message of a FleetsimError: one line, under MAX_MESSAGE characters."""
    assert isinstance(exc, FleetsimError), f"{type(exc).__name__}: {exc!s:.300}"
    message = str(exc)
    assert message and "\n" not in message and "\r" not in message, message[:500]
    assert len(message) < MAX_MESSAGE, f"{len(message)} chars: {message[:500]}"
    return message


def outcome(call, seconds: float = HANG_S):
    """('ok', value) or ('error', the one-line message); any other exception, or a call running
    past `seconds`, fails the test."""
    try:
        with time_limit(seconds), warnings.catch_warnings():
            warnings.simplefilter("ignore", FleetsimWarning)
            return "ok", call()
    except FleetsimError as exc:
        return "error", assert_one_line(exc)


@contextlib.contextmanager
def file_with(raw: bytes, name: str):
    """A temporary file holding `raw`, in its own folder."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(raw)
        yield path


def mutate_bytes(raw: bytes, draw) -> bytes:
    """`raw` as it is, cut short, with a few random bytes inserted, behind a BOM, or with a NUL."""
    op = draw(st.sampled_from(["none", "none", "truncate", "insert", "bom", "nul"]))
    if op == "truncate":
        return raw[: draw(st.integers(min_value=0, max_value=len(raw)))]
    if op == "insert":
        at = draw(st.integers(min_value=0, max_value=len(raw)))
        return raw[:at] + draw(st.binary(min_size=1, max_size=6)) + raw[at:]
    if op == "bom":
        return b"\xef\xbb\xbf" + raw
    if op == "nul":
        return raw.replace(b",", b"\x00", 1)
    return raw
