"""What a batch of writes will do, decided without I/O: the operations, the policy
that judges each against the records it read, and the plan the store's transaction
then carries out (``registry/store.py`` reads, locks and writes; nothing here awaits).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from schemas.errors import (
    IdentifierExists,
    IdentifierNotFound,
    IdresError,
    InvalidValue,
    ValuesNotFound,
)
from schemas.identifiers import Identifier
from schemas.identifiers.bid_address import check_keys
from schemas.record import Record, check_values, same_content

Op = Literal["create", "replace", "delete"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    index: int
    type: str
    change: Literal["added", "modified", "removed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PutOp:
    """Create or replace a record; with ``indexes``, set only those values of it."""

    record: Record
    overwrite: bool = True
    indexes: frozenset[int] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteOp:
    """Delete a record; with ``indexes``, remove only those values of it."""

    handle: str
    indexes: frozenset[int] | None = None


WriteOp = PutOp | DeleteOp


def op_handle(op: WriteOp) -> str:
    return op.record.handle if isinstance(op, PutOp) else op.handle


class Policy(Protocol):
    """Decides each operation of a batch inside its transaction (no I/O of its own)."""

    def prefix_handles(self, op: WriteOp) -> Iterable[str]:
        """Records the decision needs besides the target (prefix records)."""
        ...

    def decide(self, op: WriteOp, old: Record | None, context: Mapping[str, Record]) -> WriteOp:
        """The operation to apply (possibly amended), or raise an IdresError."""
        ...

    def begin(self) -> None:
        """A (re)started transaction: forget anything learned in an earlier attempt."""
        ...

    def admissible(self, ident: Identifier) -> None:
        """Raise for an operation refused whatever the records say (outside this node's
        prefixes): checked before the transaction locks anything."""
        ...


class AllowAll:
    """The policy of trusted callers: the node's own bootstrap, tests of the store."""

    def begin(self) -> None:
        pass

    def prefix_handles(self, op: WriteOp) -> Iterable[str]:
        return ()

    def decide(self, op: WriteOp, old: Record | None, context: Mapping[str, Record]) -> WriteOp:
        return op

    def admissible(self, ident: Identifier) -> None:
        pass


def diff(old: Record | None, new: Record | None) -> tuple[Change, ...]:
    """What changed between two versions of a record, by index."""
    if old is None and new is not None:  # a create: everything is new (and sorted)
        return tuple(Change(index=v.index, type=v.type, change="added") for v in new.values)
    before = {v.index: v for v in old.values} if old else {}
    after = {v.index: v for v in new.values} if new else {}
    out: list[Change] = []
    for index in sorted(before.keys() | after.keys()):
        a, b = before.get(index), after.get(index)
        if a is None and b is not None:
            out.append(Change(index=index, type=b.type, change="added"))
        elif b is None and a is not None:
            out.append(Change(index=index, type=a.type, change="removed"))
        elif a is not None and b is not None and not same_content(a, b):
            out.append(Change(index=index, type=b.type, change="modified"))
    return tuple(out)


@dataclass(slots=True, kw_only=True)
class Planned:
    position: int
    op: Op
    handle: str
    ident: Identifier
    version: int
    old: Record | None
    new: Record | None
    changes: tuple[Change, ...]


def merge_indexes(op: WriteOp, old: Record | None) -> WriteOp:
    """Turn an edit of single values into the whole record it leaves behind."""
    if op.indexes is None:
        return op
    kept = tuple(v for v in (old.values if old else ()) if v.index not in op.indexes)
    if isinstance(op, DeleteOp):
        assert old is not None
        missing = sorted(op.indexes - {v.index for v in old.values})
        if missing:
            raise ValuesNotFound(
                f"{op.handle} has no value at index " + ", ".join(map(str, missing))
            )
        if not kept:
            raise InvalidValue.single(
                "index",
                "removing these values would leave the record empty; delete the record instead",
            )
        return PutOp(record=Record(handle=op.handle, values=kept))
    stray = sorted({v.index for v in op.record.values} - op.indexes)
    if stray:
        raise InvalidValue.single(
            "values",
            f"with ?index=, send only values at those indexes; not {', '.join(map(str, stray))}",
        )
    return PutOp(record=Record(handle=op.record.handle, values=kept + op.record.values))


def plan(
    valid: Sequence[tuple[int, WriteOp, Identifier]],
    old_records: Mapping[str, Record],
    versions: Mapping[str, int],
    last_version: Mapping[str, int],
    context: Mapping[str, Record],
    policy: Policy,
) -> tuple[list[Planned], dict[int, IdresError]]:
    """Each operation against what the transaction read: the records it changes (with
    version and changes), and the operations refused, by position.

    ``versions`` has the live identifiers' versions, ``last_version`` the last version
    history remembers of those that are gone (a re-created identifier goes on from it).
    """
    planned: list[Planned] = []
    refused: dict[int, IdresError] = {}
    for pos, op, ident in valid:
        handle = ident.canonical
        old = old_records.get(handle)
        try:
            if isinstance(op, PutOp) and old is not None and not op.overwrite:
                raise IdentifierExists(handle)
            if isinstance(op, DeleteOp) and old is None:
                raise IdentifierNotFound(handle)
            merged = merge_indexes(op, old)
            if merged is not op and isinstance(merged, PutOp):
                check_values(merged.record.values)  # old and new values together
            if isinstance(merged, PutOp):
                check_keys(ident, merged.record.public_keys())  # a did:bid is its key's address
            # the policy decides; it is trusted not to make a valid record invalid
            decided = policy.decide(merged, old, context)
            new = decided.record if isinstance(decided, PutOp) else None
        except IdresError as exc:
            refused[pos] = exc
            continue
        version = (versions[handle] if old is not None else last_version.get(handle, 0)) + 1
        kind: Op = "delete" if new is None else ("create" if old is None else "replace")
        planned.append(
            Planned(
                position=pos,
                op=kind,
                handle=handle,
                ident=ident,
                version=version,
                old=old,
                new=new,
                changes=diff(old, new),
            )
        )
    return planned, refused
