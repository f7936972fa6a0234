"""The directory on the log: delegations published to a compacted topic, keyed by node.

Every node announces the delegation its parent signed; every node reads the topic and
adopts the delegations whose signatures chain to its trust anchor. A delegation that
does not verify is ignored (and logged): the directory a node holds never loses its
verified links to an unverifiable message.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import cbor2

from resolver.topology import Delegation, Directory
from schemas.errors import EncodingError, IdresError
from sync.log import DIRECTORY_TOPIC, Log, LogUnavailable

log = logging.getLogger("idres.sync.directory")


def digest(d: Delegation) -> bytes:
    """A delegation's identity: its signed bytes and signature, hashed."""
    return hashlib.sha256(d.signed_bytes() + d.signature).digest()


def encode_delegation(d: Delegation) -> bytes:
    return cbor2.dumps({"v": 1, "delegation": d.to_json()}, canonical=True)


def decode_delegation(data: bytes) -> Delegation:
    try:
        obj = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise EncodingError(f"directory message is not CBOR: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("v") != 1 or "delegation" not in obj:
        raise EncodingError("directory message must be {v: 1, delegation: {...}}")
    return Delegation.from_json(obj["delegation"])


_ISSUER_BURST = 500.0  # delegations one issuer may have adopted at once
_ISSUER_RATE = 10.0  # and per second after that
_MAX_PENDING = 1_000  # delegations waiting for their parent


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    delegation: Delegation | None  # None: the message was not a delegation
    reason: str


class LiveDirectory:
    """The directory a node routes by, grown by verified delegations from the log.

    Bounded: the directory's own limits (nodes, children per issuer, prefixes) and a
    rate per issuer, so a node that may sign children cannot make every other node
    spend its time on a flood of them. A refused delegation is checked against the
    directory held, never by re-verifying all of it.
    """

    def __init__(
        self,
        initial: Directory,
        trust_anchor: bytes,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.current = initial
        self.trust_anchor = trust_anchor
        self.offset = 0
        self.refused = 0
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # issuer -> (tokens, when)
        # delegations whose parent is not here yet (announced before it): tried again
        # as the directory grows; bounded, oldest dropped first
        self.pending: dict[bytes, Delegation] = {}
        # where refusals are kept with their reason (the node's dead_letters table)
        self.keep: Callable[[int, Refusal, bytes], Awaitable[None]] | None = None
        # told of the delegations taken from the log (the sync process tells its
        # serving workers, sync/coherence.py)
        self.on_adopted: Callable[[list[Delegation]], None] | None = None

    def __call__(self) -> Directory:
        return self.current

    def _spend(self, issuer: str) -> bool:
        now = self.clock()
        tokens, since = self._buckets.get(issuer, (_ISSUER_BURST, now))
        tokens = min(_ISSUER_BURST, tokens + (now - since) * _ISSUER_RATE)
        if tokens < 1.0:
            self._buckets[issuer] = (tokens, now)
            return False
        self._buckets[issuer] = (tokens - 1.0, now)
        return True

    def adopt(self, delegations: Iterable[Delegation]) -> tuple[int, list[Refusal]]:
        """Take each newer delegation that keeps the directory valid; how many were
        taken, and the refused ones with why.

        A node keeps its parent: a delegation naming another parent for a known node
        is refused (a neighbour cannot adopt it). Each is tried on its own, in order
        of issue, so one bad message does not discard the good ones beside it.
        """
        taken, refused = self._adopt(delegations, rated=True)
        if taken and self.on_adopted is not None:
            self.on_adopted(taken)
        return len(taken), refused

    def replay(self, delegations: Iterable[Delegation]) -> int:
        """Take delegations another process of this node adopted already (a serving
        worker, from its sync process): checked as ``adopt`` checks them, but not
        charged to their issuer's rate again; how many were new here."""
        taken, _ = self._adopt(delegations, rated=False)
        return len(taken)

    def _adopt(
        self, delegations: Iterable[Delegation], *, rated: bool
    ) -> tuple[list[Delegation], list[Refusal]]:
        taken: list[Delegation] = []
        refused: list[Refusal] = []
        waiting = [*self.pending.values(), *delegations]
        self.pending = {}
        while True:
            before = len(taken)
            for d in sorted(waiting, key=lambda d: d.issued):
                verdict = self._adopt_one(d, rated=rated)
                if verdict is True:
                    taken.append(d)
                elif verdict is False:
                    self._park(d)
                elif verdict is not None:
                    self.refused += 1
                    log.warning("ignoring delegation of %r: %s", d.name, verdict)
                    refused.append(Refusal(delegation=d, reason=verdict))
            if len(taken) == before or not self.pending:
                return taken, refused
            waiting = list(self.pending.values())  # a parent arrived: its children now
            self.pending = {}

    def _park(self, d: Delegation) -> None:
        # by content, not by name: a forged message naming a waiting node cannot
        # displace it (it is only one more entry, and the oldest go first)
        key = digest(d)
        self.pending.pop(key, None)
        self.pending[key] = d
        while len(self.pending) > _MAX_PENDING:
            self.pending.pop(next(iter(self.pending)))

    def _adopt_one(self, d: Delegation, *, rated: bool = True) -> bool | str | None:
        """True if taken, None if nothing new, False to wait (its parent is not here
        yet, or its issuer is over its rate), else why it is refused."""
        held = self.current.by_name.get(d.name)
        if held is not None and (d.issued < held.issued or d == held):
            return None
        if held is not None and d.parent != held.parent:
            return f"node {d.name!r} has parent {held.parent!r}, not {d.parent!r}"
        if d.parent is not None and d.parent not in self.current.by_name:
            return False
        try:
            self.current.check_signed(d)  # a forgery costs one signature check, no more
        except IdresError as exc:
            return f"does not verify: {exc.message}"
        if rated and not self._spend(d.parent or d.name):  # charged to the verified issuer
            return False
        try:
            self.current = self.current.with_delegation(d)
        except IdresError as exc:
            return f"does not verify: {exc.message}"
        return True

    def metrics_lines(self) -> list[str]:
        return [
            "# HELP idres_directory_nodes Nodes in the directory this node routes by.",
            "# TYPE idres_directory_nodes gauge",
            f"idres_directory_nodes {len(self.current.by_name)}",
            "# HELP idres_directory_refused_total Delegations from the log refused here.",
            "# TYPE idres_directory_refused_total counter",
            f"idres_directory_refused_total {self.refused}",
            "# HELP idres_directory_pending Delegations waiting for their parent's.",
            "# TYPE idres_directory_pending gauge",
            f"idres_directory_pending {len(self.pending)}",
        ]

    async def announce(self, log_: Log, delegations: Iterable[Delegation]) -> None:
        await log_.ensure_topic(DIRECTORY_TOPIC, compacted=True)
        for d in delegations:
            # keyed by content: compaction drops only repeats of the same delegation, so
            # no node can erase another's by announcing under its name
            await log_.append(DIRECTORY_TOPIC, digest(d).hex().encode(), [encode_delegation(d)])

    async def follow(self, log_: Log, *, wait: float = 1.0) -> None:
        """Read the directory topic until cancelled."""
        while True:
            try:
                await log_.ensure_topic(DIRECTORY_TOPIC, compacted=True)
                records = await log_.fetch({DIRECTORY_TOPIC: self.offset}, wait=wait)
            except LogUnavailable as exc:
                log.warning("directory: %s", exc)
                await asyncio.sleep(1.0)
                continue
            found: list[tuple[int, Delegation, bytes]] = []
            for r in records:
                self.offset = r.offset + 1
                try:
                    found.append((r.offset, decode_delegation(r.value), r.value))
                except EncodingError as exc:
                    log.warning("directory offset %d ignored: %s", r.offset, exc)
                    self.refused += 1
                    bad = Refusal(delegation=None, reason=f"unreadable: {exc.message}")
                    await self._keep(r.offset, bad, r.value)
            if found or self.pending:  # parked ones are tried again as time passes
                _, refusals = self.adopt(d for _, d, _ in found)
                where = {id(d): (offset, raw) for offset, d, raw in found}
                for refusal in refusals:
                    offset, raw = where[id(refusal.delegation)]
                    await self._keep(offset, refusal, raw)

    async def _keep(self, offset: int, refusal: Refusal, raw: bytes) -> None:
        if self.keep is None:
            return
        try:
            await self.keep(offset, refusal, raw)
        except IdresError as exc:  # the log keeps the message; the count is in /metrics
            log.warning("could not keep the refused directory message %d: %s", offset, exc)
