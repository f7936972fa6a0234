"""The plan of a batch, decided without a database: a table of operations against the
records a transaction read."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pytest

from registry.plan import AllowAll, DeleteOp, PutOp, WriteOp, plan
from schemas.errors import Forbidden, IdentifierExists, IdentifierNotFound, ValuesNotFound
from schemas.identifiers import parse
from schemas.record import DataFormat, HandleValue, Record


def rec(handle: str, *urls: str) -> Record:
    return Record(
        handle=handle,
        values=tuple(
            HandleValue(index=n, type="URL", format=DataFormat.STRING, value=u)
            for n, u in enumerate(urls, start=1)
        ),
    )


OLD = {"88.1/A": rec("88.1/A", "https://a/1")}
LIVE = {"88.1/A": 3}
GONE = {"88.1/B": 7}  # deleted at version 7: a new B goes on from there


def run(op: WriteOp, policy: AllowAll | None = None) -> tuple[object, ...]:
    handle = op.record.handle if isinstance(op, PutOp) else op.handle
    planned, refused = plan([(0, op, parse(handle))], OLD, LIVE, GONE, {}, policy or AllowAll())
    if refused:
        return (type(refused[0]),)
    (p,) = planned
    return p.op, p.version, tuple((c.index, c.change) for c in p.changes)


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        (PutOp(record=rec("88.1/N", "https://n")), ("create", 1, ((1, "added"),))),
        (PutOp(record=rec("88.1/B", "https://b")), ("create", 8, ((1, "added"),))),
        (PutOp(record=rec("88.1/A", "https://a/2")), ("replace", 4, ((1, "modified"),))),
        (PutOp(record=rec("88.1/A", "https://a/1"), overwrite=False), (IdentifierExists,)),
        (DeleteOp(handle="88.1/A"), ("delete", 4, ((1, "removed"),))),
        (DeleteOp(handle="88.1/N"), (IdentifierNotFound,)),
        (
            PutOp(record=rec("88.1/A", "https://a/1", "https://a/2"), indexes=frozenset({1, 2})),
            ("replace", 4, ((2, "added"),)),  # index 1 sent again unchanged
        ),
        (DeleteOp(handle="88.1/A", indexes=frozenset({9})), (ValuesNotFound,)),
    ],
)
def test_each_operation_against_what_the_transaction_read(
    op: WriteOp, expected: tuple[object, ...]
) -> None:
    assert run(op) == expected


class RefuseB(AllowAll):
    def decide(self, op: WriteOp, old: Record | None, context: Mapping[str, Record]) -> WriteOp:
        if isinstance(op, PutOp) and op.record.handle.endswith("/B"):
            raise Forbidden("not B")
        return op

    def prefix_handles(self, op: WriteOp) -> Iterable[str]:
        return ()


def test_a_refused_operation_fails_alone() -> None:
    ops: list[WriteOp] = [PutOp(record=rec("88.1/B", "x")), PutOp(record=rec("88.1/C", "y"))]
    planned, refused = plan(
        [(n, op, parse(op.record.handle)) for n, op in enumerate(ops) if isinstance(op, PutOp)],
        OLD,
        LIVE,
        GONE,
        {},
        RefuseB(),
    )
    assert [p.handle for p in planned] == ["88.1/C"]
    assert list(refused) == [0]
    assert str(refused[0]) == "not B"
