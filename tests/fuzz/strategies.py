"""Hypothesis strategies for the fuzz tests: valid seeds and byte mutations of them.

The same mutations libFuzzer applies first (flip, insert, erase, repeat, splice,
truncate), so a short run in the suite starts where the long atheris run does: from
real blocks, operations and signed headers made by the project's own encoders.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from benchmarks.fuzz.targets import TARGETS, Crash, is_bad_input

# derandomized and without a database, so every run of the suite tries the same inputs
FUZZ = settings(
    max_examples=200,
    derandomize=True,
    database=None,
    deadline=None,  # no timed assertions in tests: hangs are the long run's to find
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with up to four byte-level mutations, or two seeds spliced."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["flip", "set", "insert", "erase", "repeat", "splice", "cut"]))
        if kind == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and at < len(data):
            data[at] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, 0x1B, 0x5B, 0x9F, 0xBF]))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "erase":
            del data[at : at + draw(st.integers(1, 32))]
        elif kind == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 16))] * draw(st.integers(1, 8))
        elif kind == "splice":
            other = draw(st.sampled_from(seeds))
            data[at:] = other[draw(st.integers(0, len(other))) :]
        elif kind == "cut":
            del data[at:]
    return bytes(data)


def inputs(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    """Mostly mutated seeds, some raw bytes."""
    return st.one_of(mutated(seeds), mutated(seeds), mutated(seeds), st.binary(max_size=256))


def run(name: str, data: bytes) -> None:
    """Feed ``data`` to the target: it returns, or raises its documented error."""
    expect(lambda: TARGETS[name].call(data))


def expect(call: Callable[[], object]) -> None:
    """Run ``call``: it returns, or raises the documented error for bad input."""
    try:
        call()
    except Crash:
        raise
    except Exception as exc:
        if not is_bad_input(exc):
            raise
