"""The parsed form every scheme produces: a frozen Identifier with its routing key."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Scheme(StrEnum):
    HANDLE = "handle"
    GTIN = "gtin"
    GLN = "gln"
    SSCC = "sscc"
    OID = "oid"
    ECODE = "ecode"
    DID_BID = "did:bid"
    DID_CN = "did:cn"


class Namespace(StrEnum):
    """Delegation spaces: a prefix in one never matches an identifier of another."""

    HANDLE = "handle"
    GS1 = "gs1"
    OID = "oid"
    ECODE = "ecode"
    BID = "bid"


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutingKey:
    """Where an identifier is delegated: longest-prefix match over ``labels``.

    Handle prefixes and OIDs route by dotted segments, GS1 and Ecode by single
    digits, did:bid by its sub-chain code (no labels: the main chain).
    """

    namespace: Namespace
    labels: tuple[str, ...]

    def __str__(self) -> str:
        sep = "." if self.namespace in (Namespace.HANDLE, Namespace.OID) else ""
        return f"{self.namespace}:{sep.join(self.labels)}"

    def prefixes(self) -> list[RoutingKey]:
        """Every prefix, longest first, down to the empty root of the namespace."""
        return [
            RoutingKey(namespace=self.namespace, labels=self.labels[:n])
            for n in range(len(self.labels), -1, -1)
        ]


@dataclass(frozen=True, slots=True, kw_only=True)
class Identifier:
    """One identifier in canonical form.

    ``canonical`` is the key records are stored under; two inputs that name the
    same thing (a GTIN-13 and its GTIN-14 form, a Digital Link URI and its GTIN)
    have the same canonical form. ``qualifiers`` carries GS1 Digital Link key
    qualifiers (AI, value) in path order; ``uri`` the canonical Digital Link URI
    when the input was one.
    """

    scheme: Scheme
    canonical: str
    routing: RoutingKey
    qualifiers: tuple[tuple[str, str], ...] = field(default=())
    uri: str | None = None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "scheme": str(self.scheme),
            "canonical": self.canonical,
            "routing_key": str(self.routing),
        }
        if self.qualifiers:
            out["qualifiers"] = dict(self.qualifiers)
        if self.uri is not None:
            out["uri"] = self.uri
        return out
