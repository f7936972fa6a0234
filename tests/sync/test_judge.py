"""The follower's decision on one block, as a table: no database, no log."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from idres.assembly import NodeSpec, delegations
from resolver.topology import Directory, Role
from schemas.chain import Anchor, Block, ChainError, Tip, anchor_of, cut_block, tip_after
from schemas.errors import EncodingError
from schemas.oplog import Operation, encode_operation
from sync.judge import Accept, Dead, Gap, Skip, Verdict, Wait, judge
from tests.sync.chains import url_record

SPECS = [
    NodeSpec(name="super", role=Role.SUPER, parent=None, url="http://s", prefixes=()),
    NodeSpec(name="bb", role=Role.BACKBONE, parent="super", url="http://b", prefixes=("88",)),
    NodeSpec(name="a", role=Role.SUBCHAIN, parent="bb", url="http://a", prefixes=("88.100",)),
    NodeSpec(name="c", role=Role.SUBCHAIN, parent="bb", url="http://c", prefixes=("88.200",)),
]
KEYS = {s.name: ed25519.Ed25519PrivateKey.generate() for s in SPECS}
SIGNED = delegations(SPECS, KEYS)
DIRECTORY = Directory(SIGNED, trust_anchor=SIGNED[0].public_key)


def put(handle: str) -> bytes:
    record = url_record(handle, "https://x.example/")
    return encode_operation(
        Operation(op="create", handle=handle, version=1, actor="t", at=1, record=record)
    )


def block(chain: str, *items: tuple[str, bytes], tip: Tip | None = None, by: str = "") -> Block:
    return cut_block(
        chain=chain,
        alg="sha256",
        tip=tip or Tip(),
        items=items,  # type: ignore[arg-type]
        key=KEYS[by or chain],
        at=1_700_000_000_000,
    )


A1 = block("a", ("op", put("88.100.1/X")))
A2 = block("a", ("op", put("88.100.1/Y")), tip=tip_after(A1))
ANCHOR_A1 = anchor_of(A1).encode()
FORGED = Anchor(chain="a", height=1, hash=bytes(32), seq=A1.last_seq, head=A1.header.head).encode()


def verdict(chain: str, b: Block | EncodingError, **kw: object) -> Verdict:
    args: dict[str, object] = {
        "tip": Tip(),
        "directory": DIRECTORY,
        "held": {},
        "below": {("a", 1): A1.hash},
        **kw,
    }
    return judge(chain, b, **args)  # type: ignore[arg-type]


CASES: list[tuple[str, Callable[[], Verdict], type, str]] = [
    ("the next block", lambda: verdict("a", A1), Accept, ""),
    ("a repeat", lambda: verdict("a", A1, tip=tip_after(A1), held={1: A1.hash}), Skip, ""),
    (
        "a repeat that differs",
        lambda: verdict("a", A1, tip=tip_after(A1), held={1: bytes(32)}),
        Dead,
        "differs from the block 1 already applied",
    ),
    ("a block after a missing one", lambda: verdict("a", A2), Gap, "missing"),
    ("not a block", lambda: verdict("a", EncodingError("junk")), Dead, "junk"),
    ("on another chain's topic", lambda: verdict("c", A1), Dead, "on the topic of 'c'"),
    (
        "signed by another key",
        lambda: verdict("a", block("a", ("op", put("88.100.1/X")), by="c")),
        Dead,
        "is not signed by its node",
    ),
    (
        "a node not in the directory",
        lambda: verdict("z", block("z", ("op", b"x"), by="a")),
        Dead,
        "not in the directory",
    ),
    (
        "an anchor of the node's child",
        lambda: verdict("bb", block("bb", ("anchor", ANCHOR_A1))),
        Accept,
        "",
    ),
    (
        "an anchor of a block not here yet",
        lambda: verdict("bb", block("bb", ("anchor", ANCHOR_A1)), below={}),
        Wait,
        "block 1 of 'a' is not here yet",
    ),
    (
        "an anchor with another hash",
        lambda: verdict("bb", block("bb", ("anchor", FORGED))),
        Dead,
        "a hash that is not the block's",
    ),
    (
        "an anchor of another node's child",
        lambda: verdict("super", block("super", ("anchor", ANCHOR_A1))),
        Dead,
        "which is not its child",
    ),
]


@pytest.mark.parametrize(("what", "run", "kind", "why"), CASES, ids=[c[0] for c in CASES])
def test_judge(what: str, run: Callable[[], Verdict], kind: type, why: str) -> None:
    got = run()
    assert isinstance(got, kind), got
    if why:
        assert why in getattr(got, "why", ""), got


def test_operations_outside_the_chains_prefixes_are_accepted_apart() -> None:
    b = block(
        "a",
        ("op", put("88.100.1/X")),
        ("op", put("88.200.1/SIBLING")),
        ("op", put("0.NA/88.100")),  # its own prefix record: local, not applied, not refused
        ("op", put("0.NA/88")),  # its parent's: refused
    )
    got = verdict("a", b)
    assert isinstance(got, Accept)
    assert [op.handle for op in got.ops] == ["88.100.1/X"]
    assert [why for _, why in got.foreign] == [
        "'a' does not hold 88.200.1/SIBLING (version 1)",
        "'a' does not hold 0.NA/88 (version 1)",
    ]


def test_chain_error_is_an_encoding_error() -> None:
    assert issubclass(ChainError, EncodingError)  # judge's Dead covers both
