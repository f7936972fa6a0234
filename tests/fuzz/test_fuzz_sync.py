"""Fuzzing, briefly, of what arrives from other nodes: delegations on the directory
topic (decoded, then offered to a node's directory, which never raises) and offline
proofs (``sync.proof.check`` reports every problem in its result, never raises)."""

from __future__ import annotations

from hypothesis import given

from benchmarks.fuzz import seeds
from benchmarks.fuzz.seeds import delegations
from sync.proof import check
from tests.fuzz.strategies import FUZZ, inputs, run


def test_the_proof_seed_checks_out_with_the_trusted_key() -> None:
    import orjson

    answer = orjson.loads(seeds.proof()[0])
    result = check(answer, delegations()[0].public_key)
    assert result.problems == []
    assert len(result.claims) == 3  # delegations, the operation, the anchor


def test_every_seed_is_accepted() -> None:
    from benchmarks.fuzz.targets import TARGETS

    assert all(TARGETS["directory"].call(seed) for seed in seeds.directory())
    assert all(TARGETS["proof"].call(seed) for seed in seeds.proof())


@FUZZ
@given(data=inputs(seeds.directory()))
def test_directory_messages_are_adopted_or_ignored(data: bytes) -> None:
    run("directory", data)


@FUZZ
@given(data=inputs(seeds.proof()))
def test_proofs_are_checked_without_raising(data: bytes) -> None:
    run("proof", data)
