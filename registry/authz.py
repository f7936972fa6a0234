"""Who may write what: HS_ADMIN permissions over identifiers and their prefix records.

A prefix P is administered by the record ``0.NA/P`` (the Handle convention; other
namespaces write their routing key, e.g. ``0.NA/gs1:690123``). A signer, named by
its key id ``index:handle``, may act where an HS_ADMIN value of the target record, or
of a prefix record above it, names that key with every permission the change needs.
Pure decisions: nothing here awaits.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from schemas.errors import AuthenticationNeeded, Forbidden, InvalidIdentifier
from schemas.identifiers import Identifier, Namespace, RoutingKey
from schemas.identifiers.prefix import administered, delegated_prefix
from schemas.record import AdminPerm, Record, same_content

PREFIX_RECORD_PREFIX = "0.NA"
_NA_LABELS = ("0", "NA")
# Values that decide who may act: changing a key that an HS_ADMIN names is as strong
# as changing the HS_ADMIN itself, so all of them need the admin permissions.
ADMIN_TYPES = frozenset({"HS_ADMIN", "HS_PUBKEY", "HS_SECKEY", "HS_VLIST"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Signer:
    """The key that signed a request: value ``index`` (an HS_PUBKEY) of ``handle``."""

    handle: str
    index: int

    def __str__(self) -> str:
        return f"{self.index}:{self.handle}"


def prefix_record_handle(routing: RoutingKey) -> str:
    """``0.NA/88.100.1`` for handle prefixes, ``0.NA/gs1:690123`` for other namespaces."""
    name = str(routing)
    if routing.namespace is Namespace.HANDLE:
        name = name.removeprefix("handle:")
    return f"{PREFIX_RECORD_PREFIX}/{name}"


def named_prefix(ident: Identifier) -> RoutingKey | None:
    """For a prefix record ``0.NA/P`` (P in canonical form), the prefix P; else None."""
    if ident.routing.namespace is not Namespace.HANDLE or ident.routing.labels != _NA_LABELS:
        return None
    try:
        key = delegated_prefix(ident.canonical[len(PREFIX_RECORD_PREFIX) + 1 :])
    except InvalidIdentifier:
        return None
    return key if prefix_record_handle(key) == ident.canonical else None


def governing_key(ident: Identifier) -> RoutingKey:
    """The routing key whose prefixes govern ``ident``: a prefix record's own prefix."""
    return named_prefix(ident) or ident.routing


def covering_prefix_handles(ident: Identifier) -> tuple[str, ...]:
    """Prefix records that administer ``ident``, longest prefix first.

    For a prefix record ``0.NA/P`` these are the records of P's proper prefixes: a
    prefix is delegated by its parent, not by itself.
    """
    own = named_prefix(ident)
    return _covering(own or ident.routing, own is not None)


@functools.lru_cache(maxsize=4096)
def _covering(key: RoutingKey, skip_self: bool) -> tuple[str, ...]:
    # Identifiers under one prefix share their routing key: a batch computes this once.
    prefixes = key.prefixes()[1 if skip_self else 0 :]
    return tuple(prefix_record_handle(p) for p in prefixes if administered(p))


def required_permissions(old: Record | None, new: Record | None) -> AdminPerm:
    """The HS_ADMIN permissions a change from ``old`` to ``new`` needs (None: absent)."""
    if new is None:
        return AdminPerm.DELETE_HANDLE
    if old is None:
        return AdminPerm.ADD_HANDLE
    # Replacing a record is a modification even when its content comes back the same:
    # a new version with new timestamps, and no unsigned or unauthorised no-op writes.
    needed = AdminPerm.MODIFY_VALUE
    before = {v.index: v for v in old.values}
    after = {v.index: v for v in new.values}
    for index in before.keys() | after.keys():
        a, b = before.get(index), after.get(index)
        admin = (a is not None and a.type in ADMIN_TYPES) or (
            b is not None and b.type in ADMIN_TYPES
        )
        if a is None:
            needed |= AdminPerm.ADD_ADMIN if admin else AdminPerm.ADD_VALUE
        elif b is None:
            needed |= AdminPerm.REMOVE_ADMIN if admin else AdminPerm.REMOVE_VALUE
        elif not same_content(a, b):
            needed |= AdminPerm.MODIFY_ADMIN if admin else AdminPerm.MODIFY_VALUE
    return needed


def granted(signer: Signer, records: Iterable[Record | None]) -> AdminPerm:
    """Union of the permissions HS_ADMIN values of ``records`` give to ``signer``."""
    perms = AdminPerm(0)
    for record in records:
        if record is None:
            continue
        for admin in record.admins():
            if admin.handle == signer.handle and admin.index == signer.index:
                perms |= admin.permissions
    return perms


def authorize(
    signer: Signer | None,
    needed: AdminPerm,
    *,
    target: Record | None,
    prefixes: Iterable[Record | None],
    what: str,
    grant: Callable[[Record], AdminPerm] | None = None,
) -> None:
    """Raise unless ``signer`` holds every permission in ``needed``.

    Permissions are not added up across records: the target or one prefix record
    must grant them all, as in the Handle System. ``grant`` may stand in for
    ``granted`` (a caller deciding many operations caches it per prefix record).
    """
    if signer is None:
        raise AuthenticationNeeded(f"{what} needs a signed request (RFC 9421)")
    for record in (target, *prefixes):
        if record is None:
            continue
        perms = grant(record) if grant is not None else granted(signer, [record])
        if needed in perms:
            return
    names = ", ".join(p.name.lower() for p in AdminPerm if p in needed and p.name)
    raise Forbidden(
        f"key {signer} may not {what}: it lacks {names} on the identifier "
        "and on every prefix above it"
    )


def served(ident: Identifier, served_prefixes: Iterable[RoutingKey]) -> bool:
    """Whether this node holds ``ident``: one of its prefixes covers it."""
    key = governing_key(ident)
    for prefix in served_prefixes:
        if prefix.namespace is key.namespace and key.labels[: len(prefix.labels)] == prefix.labels:
            return True
    return False
