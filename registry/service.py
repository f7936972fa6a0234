"""The registry's rules around the store: who signed a request, and what they may do.

``authenticate`` checks an RFC 9421 signature against the HS_PUBKEY its key id names,
``authenticate_secret`` a Handle.Net secret key against its HS_SECKEY (registry/seckey.py);
``RegistryPolicy`` decides each write inside the store's transaction from the
records' HS_ADMIN values; ``bootstrap`` gives the node's served prefixes their
admin key.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from registry import httpsig, seckey
from registry.authz import (
    Signer,
    authorize,
    covering_prefix_handles,
    granted,
    named_prefix,
    prefix_record_handle,
    required_permissions,
    served,
)
from registry.plan import PutOp, WriteOp, op_handle
from registry.store import PostgresStore
from schemas.errors import Forbidden, IdentifierExists, NotResponsible
from schemas.identifiers import Identifier, RoutingKey, parse
from schemas.identifiers.prefix import administered
from schemas.record import ALL_ADMIN_PERMS, AdminPerm, AdminRef, DataFormat, HandleValue, Record

ADMIN_INDEX = 100
CLOCK_SKEW = 30  # seconds a signature's "created" may lie in the future
KEY_INDEX = 300


@dataclass(frozen=True, slots=True, kw_only=True)
class Authenticated:
    signer: Signer
    # the same for every form of one signed request; None for a secret key (no replay check)
    replay_token: bytes | None
    expires: int  # until when the request could be replayed


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedRequest:
    method: str
    path: str  # as sent, percent-encoded
    query: str  # as sent, without '?'
    headers: Mapping[str, str]
    body: bytes


async def authenticate(
    store: PostgresStore,
    request: SignedRequest,
    *,
    now: int,
    max_age: int,
    authorities: Collection[str],
    network: str | None = None,
) -> Authenticated | None:
    """The signer of ``request``, None if it is unsigned; raises if the signature fails.

    Every check that needs no database comes first (syntax, freshness, the node the
    signature names in ``@authority``, the body's digest); then one read of the key.
    """
    lowered = {k.lower(): v for k, v in request.headers.items()}
    if "signature" not in lowered and "signature-input" not in lowered:
        return None
    params = httpsig.parse_signature(lowered)
    httpsig.check_freshness(params, now=now, max_age=max_age, max_skew=CLOCK_SKEW)
    httpsig.check_authority(params, lowered, authorities, network=network)
    httpsig.check_content_digest(lowered.get("content-digest"), request.body)
    handle, index = httpsig.parse_key_id(params.keyid)
    key_record = await store.get(handle)
    der = key_record.public_keys().get(index) if key_record else None
    if der is None:
        raise Forbidden(f"key id {params.keyid!r} names no HS_PUBKEY on this node")
    base = httpsig.signature_base(
        params, method=request.method, path=request.path, query=request.query, headers=lowered
    )
    try:
        httpsig.verify(params, base, der)
    except httpsig.SignatureMismatch as exc:
        if network is None:
            raise
        # the likeliest cause across nodes: a request signed for one node's name and
        # redirected to another, which sees its own name in Host
        raise httpsig.SignatureMismatch(
            f"{exc.message}; a write redirected here verifies only when signed for the "
            f"network's name {network!r}"
        ) from None
    # Remembered until no clock could accept it again: the freshness window, the skew
    # allowed, a second of rounding. Never longer, whatever "expires" says.
    last_valid = params.created + max_age
    if params.expires is not None:
        last_valid = min(last_valid, params.expires)
    # The replay token is the signed content, not the signature bytes: an ECDSA
    # signature has a second valid form (r, n - s) that would pass as new (RFC 9421 §7.2.2).
    token = hashlib.sha256(params.keyid.encode("utf-8") + b"\n" + base).digest()
    return Authenticated(
        signer=Signer(handle=handle, index=index),
        replay_token=token,
        expires=last_valid + CLOCK_SKEW + 1,
    )


async def authenticate_secret(
    store: PostgresStore, credentials: seckey.SecretKeyCredentials, *, now: int
) -> Authenticated:
    """The signer of a request that sent an HS_SECKEY secret; raises if it is wrong.

    A secret is the same in every request, so there is nothing to remember against
    replay: such a write is as replayable as its sender's secret is exposed.
    """
    record = await store.get(credentials.signer.handle)
    seckey.check_secret(record, credentials)
    return Authenticated(signer=credentials.signer, replay_token=None, expires=now)


def fingerprint(request: SignedRequest) -> bytes:
    """What a request asks for, to tell a retry from a new request under the same key."""
    h = hashlib.sha256()
    for part in (request.method.upper(), request.path, request.query):
        h.update(part.encode("utf-8", "surrogateescape") + b"\0")
    h.update(request.body)
    return h.digest()


class RegistryPolicy:
    """HS_ADMIN rules for one signed request on a node that serves ``served_prefixes``."""

    def __init__(
        self,
        signer: Signer | None,
        served_prefixes: tuple[RoutingKey, ...],
        delegated: tuple[tuple[RoutingKey, str], ...] = (),
    ) -> None:
        self.signer = signer
        self.served_prefixes = served_prefixes
        self.delegated = delegated
        # prefix records do not change inside the transaction that decides a batch
        self._prefix_grants: dict[str, AdminPerm] = {}

    def begin(self) -> None:
        self._prefix_grants.clear()

    def _grant(self, record: Record) -> AdminPerm:
        if self.signer is None:
            return AdminPerm(0)
        if not record.handle.startswith("0.NA/"):
            return granted(self.signer, [record])
        perms = self._prefix_grants.get(record.handle)
        if perms is None:
            perms = self._prefix_grants[record.handle] = granted(self.signer, [record])
        return perms

    def prefix_handles(self, op: WriteOp) -> Iterable[str]:
        return covering_prefix_handles(parse(op_handle(op)))

    def admissible(self, ident: Identifier) -> None:
        """Refuse, before any row is locked, what this node does not hold at all."""
        if not served(ident, self.served_prefixes):
            raise NotResponsible(
                f"this node does not hold {ident.canonical}; its prefixes are "
                + ", ".join(str(p) for p in self.served_prefixes)
            )
        for prefix, node in self.delegated:
            if served(ident, (prefix,)):
                raise NotResponsible(
                    f"{ident.canonical} is under {prefix}, which is delegated to node "
                    f"{node!r}; register it there"
                )

    def decide(self, op: WriteOp, old: Record | None, context: Mapping[str, Record]) -> WriteOp:
        ident = parse(op_handle(op))
        self.admissible(ident)  # checked before the locks too; the policy stands alone
        # A record needs no HS_ADMIN of its own: the prefix records above it govern it.
        # (Handle servers add one per handle; here it would be one more row for each of
        # millions of identifiers, saying what the prefix record already says.)
        new = op.record if isinstance(op, PutOp) else None
        needed = required_permissions(old, new)
        if named_prefix(ident) is not None:
            # prefixes are created and removed by the parent's derived-prefix rights
            if old is None:
                needed = AdminPerm.ADD_DERIVED_PREFIX
            elif new is None:
                needed = AdminPerm.DELETE_DERIVED_PREFIX
        prefixes = [context.get(h) for h in covering_prefix_handles(ident)]
        target = None if (old is None or (named_prefix(ident) is not None and new is None)) else old
        verb = {
            AdminPerm.ADD_HANDLE: "create",
            AdminPerm.DELETE_HANDLE: "delete",
            AdminPerm.ADD_DERIVED_PREFIX: "delegate",
            AdminPerm.DELETE_DERIVED_PREFIX: "remove the prefix",
        }.get(needed, "change")
        authorize(
            self.signer,
            needed,
            target=target,
            prefixes=prefixes,
            what=f"{verb} {ident.canonical}",
            grant=self._grant,
        )
        return op


def can_read_private(
    signer: Signer | None, record: Record, prefix_records: Iterable[Record | None]
) -> bool:
    """Whether ``signer`` may see values without public-read permission."""
    if signer is None:
        return False
    return AdminPerm.READ_VALUE in granted(signer, [record]) or any(
        AdminPerm.READ_VALUE in granted(signer, [p]) for p in prefix_records
    )


def prefix_record(
    prefix: RoutingKey,
    public_key_der: bytes | None,
    *,
    now: int,
    key_index: int = KEY_INDEX,
    admin: Signer | None = None,
) -> Record:
    """The record ``0.NA/P`` that hands prefix P to one key, with every permission.

    With ``public_key_der`` the key is stored in the record itself (a delegation);
    with ``admin`` the record names a key kept elsewhere (the node admin's).
    """
    handle = prefix_record_handle(prefix)
    owner = admin or Signer(handle=handle, index=key_index)
    values = [
        HandleValue(
            index=ADMIN_INDEX,
            type="HS_ADMIN",
            format=DataFormat.ADMIN,
            value=AdminRef(handle=owner.handle, index=owner.index, permissions=ALL_ADMIN_PERMS),
            timestamp=now,
        )
    ]
    if public_key_der is not None:
        values.append(
            HandleValue(
                index=key_index,
                type="HS_PUBKEY",
                format=DataFormat.KEY,
                value=public_key_der,
                timestamp=now,
            )
        )
    return Record(handle=handle, values=tuple(values))


NODE_ADMIN = Signer(handle="0.NA/node.admin", index=KEY_INDEX)


async def authorize_listing(
    store: PostgresStore, signer: Signer | None, prefix: RoutingKey, *, what: str
) -> None:
    """Raise unless ``signer`` may list the identifiers under ``prefix``: an HS_ADMIN
    of the prefix record 0.NA/P, or of one above it, grants it list_handles. The rule
    of the HTTP API and the Handle protocol's List Handles alike."""
    records = await store.get_many(
        prefix_record_handle(p) for p in prefix.prefixes() if administered(p)
    )
    authorize(signer, AdminPerm.LIST_HANDLES, target=None, prefixes=records.values(), what=what)


async def bootstrap(
    store: PostgresStore, served_prefixes: Iterable[RoutingKey], admin_key_der: bytes, *, now: int
) -> Signer:
    """Install the node admin's key and give each served prefix to it; return its key id.

    The admin record is rewritten at every start, so a new key in the configuration
    takes over; prefix records that exist are left as their owners made them.
    """
    admin = Record(
        handle=NODE_ADMIN.handle,
        values=(
            HandleValue(
                index=ADMIN_INDEX,
                type="HS_ADMIN",
                format=DataFormat.ADMIN,
                value=AdminRef(
                    handle=NODE_ADMIN.handle, index=NODE_ADMIN.index, permissions=ALL_ADMIN_PERMS
                ),
                timestamp=now,
            ),
            HandleValue(
                index=NODE_ADMIN.index,
                type="HS_PUBKEY",
                format=DataFormat.KEY,
                value=admin_key_der,
                timestamp=now,
            ),
        ),
    )
    current = await store.get(NODE_ADMIN.handle)
    if current is None or current.public_keys() != admin.public_keys():
        await store.put(admin, actor="bootstrap")
    for prefix in served_prefixes:
        with contextlib.suppress(IdentifierExists):
            await store.put(
                prefix_record(prefix, None, now=now, admin=NODE_ADMIN),
                actor="bootstrap",
                overwrite=False,
            )
    return NODE_ADMIN
