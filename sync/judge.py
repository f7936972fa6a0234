"""What a follower does with a block read from another node's chain, decided without
I/O: which chains a node keeps, whether a block is next, a repeat, after a gap, waiting
for a block below, or refused, and which of its operations the node applies. The
follower (``sync/follow.py``) and snapshot loading (``sync/snapshot.py``) drive these;
the offline proof check uses ``holds``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from registry.authz import named_prefix
from registry.service import NODE_ADMIN
from resolver.topology import Directory
from schemas.chain import (
    Anchor,
    Block,
    ChainError,
    ChainGap,
    Tip,
    check_block,
    decode_anchor,
)
from schemas.errors import EncodingError, IdresError
from schemas.identifiers import Namespace, parse
from schemas.oplog import Operation, decode_operation


@dataclass(frozen=True, slots=True)
class Accept:
    """A block to store: the operations to apply, what each entry is about, and the
    operations it carries that its node does not hold (kept as dead letters)."""

    block: Block
    ops: list[Operation]
    refs: list[tuple[str, int]]
    foreign: list[tuple[bytes, str]]  # (entry payload, why it is not applied)


@dataclass(frozen=True, slots=True)
class Skip:
    """A repeat of a block already applied here, identical to it."""


@dataclass(frozen=True, slots=True)
class Gap:
    """A signed block, but a block before it is not here yet."""

    why: str


@dataclass(frozen=True, slots=True)
class Wait:
    """An anchor names a block of a chain below that this node has not read yet."""

    why: str


@dataclass(frozen=True, slots=True)
class Dead:
    """Not a block this node will ever accept here: kept with why, and passed."""

    why: str


Verdict = Accept | Skip | Gap | Wait | Dead


def judge(
    chain: str,
    block: Block | EncodingError,
    *,
    tip: Tip,
    directory: Directory,
    held: Mapping[int, bytes],
    below: Mapping[tuple[str, int], bytes],
) -> Verdict:
    """What to do with one block read from ``chain``'s topic, after ``tip``.

    ``held`` has the hashes of this chain's blocks applied here at the heights that
    repeat; ``below`` the hashes of the blocks of other chains that this block's
    anchors name, where this node holds them. Nothing here does I/O.
    """
    node = directory.by_name.get(chain)
    try:
        if isinstance(block, EncodingError):
            raise block
        h = block.header
        if h.chain != chain:
            raise ChainError(f"a block of chain {h.chain!r} on the topic of {chain!r}")
        if h.height <= tip.height:
            if held.get(h.height) != block.hash:
                raise ChainError(
                    f"block {h.height} of chain {chain!r} differs from the block "
                    f"{h.height} already applied (a fork or a forgery)"
                )
            return Skip()
        if node is None:
            raise ChainError(f"chain {chain!r} is not in the directory")
        block = check_block(block, tip=tip, public_key_der=node.public_key)
        ops, refs = entries_of(block)
    except ChainGap as exc:
        return Gap(str(exc))
    except EncodingError as exc:
        return Dead(str(exc))
    for entry in block.entries:
        if entry.kind != "anchor":
            continue
        anchor = decode_anchor(entry.payload)
        why = anchor_problem(chain, block.header.height, anchor, directory)
        if why is not None:
            return Dead(why)
        have = below.get((anchor.chain, anchor.height))
        if have is None:
            return Wait(f"block {anchor.height} of {anchor.chain!r} is not here yet")
        if have != anchor.hash:
            return Dead(forged_anchor(chain, block.header.height, anchor))
    mine: list[Operation] = []
    foreign: list[tuple[bytes, str]] = []
    payloads = [e.payload for e in block.entries if e.kind == "op"]
    for op, payload in zip(ops, payloads, strict=True):
        where = scope(directory, chain, op)
        if where == "apply":
            mine.append(op)
        elif where == "foreign":
            foreign.append((payload, f"{chain!r} does not hold {op.handle} (version {op.version})"))
    return Accept(block, mine, refs, foreign)


def foreign_reason(chain: str, verdict: Accept) -> str:
    shown = "; ".join(why for _, why in verdict.foreign[:3])
    more = len(verdict.foreign) - 3
    return (
        f"block {verdict.block.header.height} of {chain!r}: {len(verdict.foreign)} "
        f"operation(s) not applied: {shown}" + (f"; and {more} more" if more > 0 else "")
    )


def anchor_problem(chain: str, height: int, anchor: Anchor, directory: Directory) -> str | None:
    """Why block ``height`` of ``chain`` may not hold ``anchor``: only a parent anchors,
    and only its own children's blocks."""
    child = directory.by_name.get(anchor.chain)
    if child is None or child.parent != chain:
        return f"block {height} of {chain!r} anchors chain {anchor.chain!r}, which is not its child"
    return None


def forged_anchor(chain: str, height: int, anchor: Anchor) -> str:
    return (
        f"block {height} of {chain!r} anchors block {anchor.height} of {anchor.chain!r} "
        "with a hash that is not the block's (a fork or a forgery)"
    )


def followed(directory: Directory, me: str, *, mirror_of: str | None = None) -> list[str]:
    """The chains ``me`` keeps a copy of: every node below it; for a mirror of another
    node, that node's chain and every chain it keeps."""
    if mirror_of is not None:
        if mirror_of not in directory.by_name:
            return []
        return sorted({mirror_of, *followed(directory, mirror_of)} - {me})
    return sorted(
        name for name in directory.by_name if name != me and me in directory.ancestors(name)
    )


def entries_of(block: Block) -> tuple[list[Operation], list[tuple[str, int]]]:
    """A checked block's operations, and what each entry is about (for its row)."""
    ops: list[Operation] = []
    refs: list[tuple[str, int]] = []
    for entry in block.entries:
        if entry.kind == "op":
            op = decode_operation(entry.payload, check_form=False)  # bound by the block
            ops.append(op)
            refs.append((op.handle, op.version))
        else:
            anchor = decode_anchor(entry.payload)
            refs.append((anchor.chain, anchor.height))
    return ops, refs


def scope(directory: Directory, chain: str, op: Operation) -> str:
    """Where an operation of ``chain`` belongs: ``apply`` (the chain's node holds the
    identifier: replicate it), ``local`` (the node's own records, in its chain but
    applied nowhere else: its admin record and the prefix records ``0.NA/P`` of its own
    prefixes), or ``foreign`` (anything else: refused, and kept as a dead letter)."""
    try:
        ident = parse(op.handle)
    except IdresError:
        return "foreign"
    if ident.canonical != op.handle or (op.record is not None and op.record.handle != op.handle):
        return "foreign"
    if ident.routing.namespace is Namespace.HANDLE and ident.routing.labels[:1] == ("0",):
        if op.handle == NODE_ADMIN.handle:
            return "local"
        governed = named_prefix(ident)
        found = directory.authority(governed) if governed is not None else None
        return "local" if found is not None and found[1].name == chain else "foreign"
    found = directory.authority(ident.routing)
    return "apply" if found is not None and found[1].name == chain else "foreign"


def holds(directory: Directory, chain: str, op: Operation) -> bool:
    """Whether ``chain``'s node is the authority for the operation's identifier: a chain
    replicates only what its delegation covers, never a prefix record (``0.NA/...``)."""
    return scope(directory, chain, op) == "apply"
