"""Resolution at one node: answer locally, from the cache, by asking the next node
(recursion), or by naming it (referral).

Decisions come from the directory (``Directory.route``) and the cache; this module
drives them: single flight for concurrent misses, stale answers when the next node
fails, loop detection through the ``Idres-Via`` header.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from registry.authz import governing_key, named_prefix
from registry.httpio import TooManyRequests, dump
from resolver.cache import Cache, CacheConfig, Entry, record_ttl
from resolver.metrics import Metrics
from resolver.topology import Directory, Route
from resolver.transport import (
    LoopDetected,
    NodeTransport,
    UpstreamBusy,
    UpstreamError,
    UpstreamTimeout,
)
from schemas.errors import IdresError
from schemas.identifiers import Identifier

VIA_HEADER = "Idres-Via"
SAFE_PATH = "/:@!$&'()*+,;=-._~"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolverConfig:
    name: str
    max_hops: int = 8
    cache: CacheConfig = field(default_factory=CacheConfig)


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    status: int
    body: bytes  # JSON, Handle REST shape
    stale: bool = False
    source: str = "local"  # local | cache | upstream | referral | none
    # how long a front may keep this answer (seconds); None: it may not. Set on the
    # answers this node's cache takes, which a NOTIFY (sync/coherence.py) or their TTL
    # makes old, never on local records or referrals
    ttl: float | None = None


LocalRead = Callable[[Identifier], Awaitable[Answer]]


class Withheld:
    """A record this node has a copy of but may not answer for (values not public):
    the node that holds it decides."""


WITHHELD = Withheld()
# this node's copy of a record held below: the answer and how long it may be cached,
# WITHHELD, or None when the copy has no such record
ReplicaRead = Callable[[Identifier], Awaitable[tuple[Answer, float] | Withheld | None]]


# How long the node's edge may keep a "not found" this node decided itself (its own
# records, or a current copy): the write or apply that registers the identifier
# NOTIFYs it in its transaction (registry.store, sync.follow) and the edge forgets it
# then, so this bounds only how long an unheard-of change could hide, as the record
# TTLs do. A "not found" from another node keeps the cache's negative TTL: no notice
# of a change there reaches this node.
HEARD_NEGATIVE_TTL = 60.0


def not_found(handle: str) -> bytes:
    return dump(
        {"responseCode": 100, "handle": handle, "message": f"identifier not found: {handle}"}
    )


class Resolver:
    def __init__(
        self,
        *,
        config: ResolverConfig,
        directory: Callable[[], Directory],
        local: LocalRead,
        transport: NodeTransport,
        metrics: Metrics,
        cache: Cache | None = None,
        replica: ReplicaRead | None = None,
        keeps: Callable[[Route], bool] | None = None,
        current: Callable[[Route], bool] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.directory = directory
        self.local = local
        self.transport = transport
        self.metrics = metrics
        self.cache = cache or Cache(config.cache)
        self.replica = replica  # this node's copy of the chains below it, when it syncs
        # whether this node keeps a copy of the chain that holds the route's identifier
        # (by default: the chains below it)
        self.keeps: Callable[[Route], bool] = keeps or (lambda route: route.kind == "down")
        # whether this node's copy of that chain is caught up with the log, so that an
        # identifier missing from it is missing (by default: never assumed)
        self.current: Callable[[Route], bool] = current or (lambda route: False)
        # whether an identifier is certainly not in this node's copies (resolver.known)
        self.absent: Callable[[str], bool] = lambda key: False
        self._clock = clock
        self._inflight: dict[tuple[str, bool], asyncio.Future[Answer]] = {}
        # told of each change this node hears of (the identifiers; None: anything may
        # have changed), when it hears of them at all: other keepers of answers
        # (the DNS face's) register here; None while no notice reaches this node
        self.forgetters: list[Callable[[list[str] | None], None]] | None = None

    @property
    def _negative_ttl(self) -> float:
        return self.cache.config.negative_ttl

    def route(self, ident: Identifier) -> Route:
        # a prefix record 0.NA/P lives with P (registry/authz.py), not under prefix 0
        return self.directory().route(self.config.name, governing_key(ident))

    async def resolve(
        self,
        ident: Identifier,
        *,
        recursive: bool = True,
        auth: bool = False,
        via: tuple[str, ...] = (),
        permit: Callable[[], bool] | None = None,
        fresh: bool = False,
    ) -> Answer:
        """The answer for ``ident``; raises IdresError subclasses for failures.

        ``fresh``: not from the cache (the edge fills its own cache with such answers:
        read after the edge's last invalidation, never an older cached copy).

        ``permit`` is asked before a lookup of the next node starts (not for answers
        from here, nor for joining a lookup already under way); False refuses it.
        """
        if self.config.name in via:
            raise LoopDetected(f"resolution loop: {' -> '.join((*via, self.config.name))}")
        if len(via) >= self.config.max_hops:
            raise LoopDetected(f"resolution took more than {self.config.max_hops} hops")
        route = self.route(ident)
        if route.kind == "local":
            answer = await self.local(ident)
            if answer.status == 404:
                return dataclasses.replace(answer, ttl=HEARD_NEGATIVE_TTL)
            return answer
        key = ident.canonical
        if not auth and not fresh:
            entry = self.cache.get(key)
            if entry is not None:
                self.metrics.inc("idres_cache_hits_total")
                return Answer(status=entry.status, body=entry.body, source="cache")
            self.metrics.inc("idres_cache_misses_total")
        if route.kind == "none":
            entry = self.cache.put_negative(key, not_found(key))
            return Answer(status=404, body=entry.body, source="none", ttl=self._negative_ttl)
        assert route.node is not None
        if self.replica is not None and not auth and self.keeps(route):
            # a record replicated up from the chain below answers here, without a hop;
            # one not (yet) here is asked for below, so a fresh write is never missed
            copy = (
                # certainly not in the copies: no query. Not for a fresh read: the edge
                # may have heard of a new identifier before this worker's filter did
                None
                if not fresh and self.absent(key) and self.current(route)
                else await self.replica(ident)
            )
            if isinstance(copy, tuple):
                answer, ttl = copy
                self.cache.put_positive(key, answer.body, ttl)
                self.metrics.inc("idres_replica_answers_total")
                return dataclasses.replace(answer, ttl=ttl)
            if copy is None and self.current(route) and named_prefix(ident) is None:
                # not in a copy that holds every block the log held a moment ago: not
                # registered, or registered within the replication lag (the negative
                # cache below would hide such a write for longer anyway). A prefix
                # record may be missing from the chain: the node that holds the prefix
                # writes its own at start (registry.service.bootstrap), outside any
                # block, so only that node can say it is not there
                entry = self.cache.put_negative(key, not_found(key))
                self.metrics.inc("idres_replica_answers_total", 'result="not_found"')
                return Answer(status=404, body=entry.body, source="replica", ttl=HEARD_NEGATIVE_TTL)
        if not recursive:
            return self.referral(ident, route)
        # One upstream call per identifier at a time (an auth=true lookup gets its own).
        # It runs as a task of its own: a caller that goes away (its connection lost,
        # its handler cancelled) must not cancel the answer others are waiting for.
        flight = (key, auth)
        task = self._inflight.get(flight)
        if task is None:
            if permit is not None and not permit():
                raise TooManyRequests(
                    f"{key} is not cached here and this request may ask the next node "
                    "for no more identifiers now; ask again for it later"
                )
            task = asyncio.ensure_future(self._ask(ident, route, auth=auth, via=via))
            self._inflight[flight] = task
            task.add_done_callback(lambda done: self._landed(flight, done))
        return await asyncio.shield(task)

    def _landed(self, flight: tuple[str, bool], task: asyncio.Future[Answer]) -> None:
        if self._inflight.get(flight) is task:
            del self._inflight[flight]
        if not task.cancelled():
            task.exception()  # retrieved: each waiter re-raises it; none is logged twice

    def referral(self, ident: Identifier, route: Route) -> Answer:
        """Name the node to ask next (Handle 303 prefix referral down, 302 service up)."""
        assert route.node is not None
        code = 303 if route.kind == "down" else 302
        referral = {
            "node": route.node.name,
            "role": route.node.role.value,
            "url": route.node.url + _handle_path(ident.canonical),
        }
        if route.prefix is not None:
            referral["prefix"] = str(route.prefix)
        body = {
            "responseCode": code,
            "handle": ident.canonical,
            "message": f"ask {route.node.name} at {route.node.url}",
            "referral": referral,
        }
        return Answer(status=200, body=dump(body), source="referral")

    async def _ask(
        self, ident: Identifier, route: Route, *, auth: bool, via: tuple[str, ...]
    ) -> Answer:
        assert route.node is not None
        key = ident.canonical
        url = route.node.url + _handle_path(key) + ("?auth=true" if auth else "")
        headers = {VIA_HEADER: ",".join((*via, self.config.name))}
        started = time.perf_counter()
        try:
            upstream = await self.transport.get(url, headers=headers)
        except UpstreamError as exc:
            self.metrics.inc("idres_upstream_requests_total", f'result="{type(exc).__name__}"')
            return self._stale_or_raise(key, exc)
        self.metrics.observe_upstream(time.perf_counter() - started)
        code = upstream.json.get("responseCode")
        if upstream.status == 200 and code == 1:
            self.metrics.inc("idres_upstream_requests_total", 'result="ok"')
            ttl = record_ttl(_value_ttls(upstream.json), self._clock())
            self.cache.put_positive(key, upstream.body, ttl)
            return Answer(status=200, body=upstream.body, source="upstream", ttl=ttl)
        if upstream.status == 404 and code == 100:
            self.metrics.inc("idres_upstream_requests_total", 'result="not_found"')
            entry = self.cache.put_negative(key, upstream.body)
            return Answer(status=404, body=entry.body, source="upstream", ttl=self._negative_ttl)
        if upstream.status >= 500 or upstream.status == 508:
            self.metrics.inc("idres_upstream_requests_total", f'result="http_{upstream.status}"')
            if upstream.status == 508:  # a loop further up is an answer, not an outage
                return Answer(status=508, body=upstream.body, source="upstream")
            # a 504 below is a timeout further down: the same answer as our own timeout
            # (RFC 9110 §15.6.5), whichever of the two timers fires first; a 503 below is
            # a node shedding load: the client may ask again (§15.6.4)
            failed = {504: UpstreamTimeout, 503: UpstreamBusy}.get(upstream.status, UpstreamError)
            return self._stale_or_raise(
                key,
                failed(
                    f"the next node failed with HTTP {upstream.status}: "
                    f"{upstream.json.get('message', '')}"
                ),
            )
        # a client error or a referral the next node gave: pass it on, never cached
        self.metrics.inc("idres_upstream_requests_total", f'result="http_{upstream.status}"')
        return Answer(status=upstream.status, body=upstream.body, source="upstream")

    def _stale_or_raise(self, key: str, exc: IdresError) -> Answer:
        entry: Entry | None = self.cache.get_stale(key)
        if entry is None or entry.negative:
            raise exc
        self.metrics.inc("idres_stale_answers_total")
        return Answer(status=entry.status, body=entry.body, stale=True, source="cache")


def _handle_path(handle: str) -> str:
    return "/api/handles/" + quote(handle, safe=SAFE_PATH)


def _value_ttls(body: dict[str, object]) -> list[tuple[int, bool]]:
    values = body.get("values")
    if not isinstance(values, list):
        return []
    out = []
    for v in values:
        if isinstance(v, dict) and isinstance(v.get("ttl"), int):
            out.append((v["ttl"], v.get("ttlType") == "absolute"))
    return out


def decorate(body: dict[str, Any], ident: Identifier, *, stale: bool) -> dict[str, Any]:
    """An answer as one request sees it: its Digital Link qualifiers passed through,
    and marked when it is a stale copy (the cached bytes themselves carry neither)."""
    if ident.qualifiers:
        body["qualifiers"] = dict(ident.qualifiers)
    if stale:
        body["stale"] = True
    return body
