"""What a node's sync process tells its serving workers, as plain values and bytes:
the identifiers a commit changed (NOTIFY payloads), and the follower's state from
which each worker decides whether its copy of a chain is current.

Nothing in this module does I/O; ``sync/coherence.py`` sends and receives these.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import orjson

from schemas.errors import EncodingError

CHANGED_CHANNEL = "idres_changed"  # payload: a JSON array of canonical identifiers
DIRECTORY_CHANNEL = "idres_directory"  # payload: the adoption's sequence number
# PostgreSQL refuses a NOTIFY payload of 8000 bytes or more (server encoding, UTF-8)
PAYLOAD_LIMIT = 7999
EVERYTHING = "*"  # a payload that tells a worker to forget every cached answer
MAX_BEHIND = 64  # blocks waiting in the log that still leave a copy current
CURRENT_WITHIN = 3.0  # seconds: see is_current
# seconds a quiet chain's node's word that its chain ends where the copy ends stays
# good (sync/tips.py asks every second, and waits up to 2 s for a node that is slow
# to answer): it bounds how long a node that stopped publishing goes unnoticed
CONFIRMED_WITHIN = 6.0


def changed_payloads(keys: Iterable[str], *, limit: int = PAYLOAD_LIMIT) -> list[str]:
    """``keys`` as NOTIFY payloads of at most ``limit`` bytes each, in order.

    A key too long for any payload (none is: an identifier has at most 255 bytes)
    turns the whole change into one EVERYTHING: a worker then forgets all it cached,
    which is always correct, never too little.
    """
    payloads: list[str] = []
    part: list[bytes] = []
    size = 2  # the brackets
    for key in keys:
        encoded = orjson.dumps(key)
        if len(encoded) + 2 > limit:
            return [EVERYTHING]
        if part and size + 1 + len(encoded) > limit:
            payloads.append((b"[" + b",".join(part) + b"]").decode())
            part, size = [], 2
        size += len(encoded) + (1 if part else 0)
        part.append(encoded)
    if part:
        payloads.append((b"[" + b",".join(part) + b"]").decode())
    return payloads


def read_changed(payload: str) -> list[str] | None:
    """The identifiers a payload names; None: forget everything (EVERYTHING, or a
    payload this worker cannot read, which it must not take for "nothing changed")."""
    if payload == EVERYTHING:
        return None
    try:
        keys = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        return None
    return keys


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainView:
    """One followed chain as the follower last saw it."""

    behind: int | None = None  # blocks waiting in the log; None: never looked
    cut_at: float | None = None  # when the last block applied here was cut (epoch s)
    hindered: bool = False  # stalled at a block, or a block missing (a gap)
    # when the chain's node last said its chain ends where this copy ends (sync/tips.py)
    confirmed_at: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FollowerView:
    """The follower's state that decides "current", passed between processes."""

    refreshed_at: float = -math.inf  # when the log was last looked at (epoch s)
    chains: Mapping[str, ChainView] = field(default_factory=dict)


NOTHING_CURRENT = FollowerView()  # a worker that has heard nothing assumes nothing


def is_current(
    view: FollowerView,
    chain: str,
    *,
    now: float,
    within: float = CURRENT_WITHIN,
    confirmed_within: float = CONFIRMED_WITHIN,
) -> bool:
    """Whether this node's copy of ``chain`` keeps up with the chain's node: the log
    looked at at most ``within`` seconds ago, the chain read unhindered, at most one
    transaction's worth of blocks waiting, and the chain's node seen publishing at
    most ``within`` seconds ago (the last block applied here cut then), or its node
    saying at most ``confirmed_within`` seconds ago that its chain ends where this
    copy does (a quiet chain; that word stands on its own, as fresh as it is, unless
    a later look at the log found blocks waiting). A view that stops being renewed
    (the sync process hangs, a worker stops hearing it) stops being current by
    itself, ``within`` seconds after its last look at the log."""
    c = view.chains.get(chain)
    if c is None or c.hindered:
        return False
    if (
        c.confirmed_at is not None
        and now - c.confirmed_at <= confirmed_within
        # unless a later look at the log found blocks waiting: the chain grew since
        and (view.refreshed_at < c.confirmed_at or c.behind == 0)
    ):
        return True  # the chain's own node said so: no need of the log's word
    if now - view.refreshed_at > within:
        return False
    if c.behind is None or c.behind > MAX_BEHIND:
        return False
    return c.cut_at is not None and now - c.cut_at <= within


def view_to_json(view: FollowerView) -> bytes:
    refreshed = view.refreshed_at if math.isfinite(view.refreshed_at) else None
    chains = {
        name: [c.behind, c.cut_at, c.hindered, c.confirmed_at]
        for name, c in sorted(view.chains.items())
    }
    return orjson.dumps({"v": 1, "refreshed_at": refreshed, "chains": chains})


def view_from_json(data: bytes | str) -> FollowerView:
    """The view ``view_to_json`` wrote; EncodingError names what is wrong."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise EncodingError(f"follower view is not JSON: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("v") != 1:
        raise EncodingError("follower view must be {v: 1, refreshed_at, chains}")
    refreshed, chains = obj.get("refreshed_at"), obj.get("chains")
    if refreshed is not None and not isinstance(refreshed, int | float):
        raise EncodingError(f"follower view: refreshed_at {refreshed!r} is not a time")
    if not isinstance(chains, dict):
        raise EncodingError("follower view: chains must be an object")
    out: dict[str, ChainView] = {}
    for name, fields in chains.items():
        if not (
            isinstance(fields, list)
            and len(fields) in (3, 4)  # a view written before confirmed_at had three
            and (fields[0] is None or type(fields[0]) is int)
            and (fields[1] is None or isinstance(fields[1], int | float))
            and isinstance(fields[2], bool)
            and (len(fields) == 3 or fields[3] is None or isinstance(fields[3], int | float))
        ):
            raise EncodingError(
                f"follower view: chain {name!r} is not [behind, cut_at, hindered, confirmed_at]"
            )
        confirmed = fields[3] if len(fields) == 4 else None
        out[name] = ChainView(
            behind=fields[0],
            cut_at=float(fields[1]) if fields[1] is not None else None,
            hindered=fields[2],
            confirmed_at=float(confirmed) if confirmed is not None else None,
        )
    return FollowerView(
        refreshed_at=float(refreshed) if refreshed is not None else -math.inf, chains=out
    )
