"""The directory: signed delegations, refusals, and where a lookup goes next."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from idres.assembly import NodeSpec, delegations, node_public_key
from resolver.topology import Delegation, Directory, Role, sign_delegation
from schemas.errors import Forbidden, IdresError
from schemas.identifiers import parse

SPECS = [
    NodeSpec(name="super", role=Role.SUPER, parent=None, url="http://s", prefixes=("bid:",)),
    NodeSpec(
        name="bb1", role=Role.BACKBONE, parent="super", url="http://b1", prefixes=("88", "gs1:6")
    ),
    NodeSpec(
        name="bb2",
        role=Role.BACKBONE,
        parent="super",
        url="http://b2",
        prefixes=("86", "oid:1.2.156"),
    ),
    NodeSpec(
        name="a",
        role=Role.SUBCHAIN,
        parent="bb1",
        url="http://a",
        prefixes=("88.100", "gs1:690", "bid:ab12"),
    ),
    NodeSpec(
        name="c",
        role=Role.SUBCHAIN,
        parent="bb2",
        url="http://c",
        prefixes=("86.1000", "oid:1.2.156.3001"),
    ),
]
KEYS = {s.name: ed25519.Ed25519PrivateKey.generate() for s in SPECS}
SIGNED = delegations(SPECS, KEYS)
DIRECTORY = Directory(SIGNED, trust_anchor=node_public_key(KEYS["super"]))


@pytest.mark.parametrize(
    ("here", "identifier", "kind", "next_node", "authority"),
    [
        ("super", "88.100.1/ABC", "down", "bb1", "a"),
        ("bb1", "88.100.1/ABC", "down", "a", "a"),
        ("a", "88.100.1/ABC", "local", None, "a"),
        ("a", "88.999/X", "up", "bb1", "bb1"),  # held by the backbone itself
        ("bb1", "88.999/X", "local", None, "bb1"),
        ("a", "86.1000.1/X", "up", "bb1", "c"),  # across the tree: up first
        ("bb1", "86.1000.1/X", "up", "super", "c"),
        ("super", "86.1000.1/X", "down", "bb2", "c"),
        ("super", "06901234567892", "down", "bb1", "a"),  # GS1 company prefix 690
        ("super", "06111111111111", "down", "bb1", "bb1"),  # gs1:6 at the backbone
        ("super", "1.2.156.3001.7", "down", "bb2", "c"),
        ("super", "1.2.840.1", "none", None, None),  # delegated nowhere
        ("a", "99.1/X", "up", "bb1", None),  # a sub-chain asks upward
        ("super", "did:bid:ab12:efGsChQR2U32pvwJcDNPoYHhGXL1Rgq", "down", "bb1", "a"),
        ("a", "did:bid:efGsChQR2U32pvwJcDNPoYHhGXL1Rgq", "up", "bb1", "super"),
        ("super", "did:bid:efGsChQR2U32pvwJcDNPoYHhGXL1Rgq", "local", None, "super"),
        ("super", "did:cn:88.100.1", "down", "bb1", "a"),
    ],
)
def test_route_follows_the_tree_by_longest_delegated_prefix(
    here: str, identifier: str, kind: str, next_node: str | None, authority: str | None
) -> None:
    route = DIRECTORY.route(here, parse(identifier).routing)
    assert route.kind == kind
    assert (route.node.name if route.node else None) == next_node
    assert (route.authority.name if route.authority else None) == authority


def _resign(d: Delegation, by: str, **changes: object) -> Delegation:
    return sign_delegation(dataclasses.replace(d, signature=b"", **changes), KEYS[by])


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda ds: [*ds[:3], _resign(ds[3], "bb2"), *ds[4:]], "not signed by 'bb1'"),
        (
            lambda ds: [*ds[:3], dataclasses.replace(ds[3], url="http://evil"), *ds[4:]],
            "not signed by",
        ),
        (lambda ds: [*ds[:3], _resign(ds[3], "bb1", parent="ghost"), *ds[4:]], "unknown parent"),
        (lambda ds: [*ds, ds[1]], "twice"),
        (lambda ds: ds[1:], "exactly one super"),
        (lambda ds: [*ds[:3], _resign(ds[3], "bb1", prefixes=("no good",)), *ds[4:]], "whitespace"),
        # bb2 gives its child c a piece of 88.100, which sub-chain a (under bb1) holds
        (
            lambda ds: [*ds[:4], _resign(ds[4], "bb2", prefixes=("88.100.1",))],
            "'c' is given handle:88.100.1, inside handle:88 of 'bb1', which is not its ancestor",
        ),
        (
            lambda ds: [*ds[:4], _resign(ds[4], "bb2", prefixes=("88.100",))],
            "delegated to both",
        ),
    ],
)
def test_a_directory_that_does_not_verify_is_refused(mutate: object, reason: str) -> None:
    with pytest.raises(IdresError) as info:  # Forbidden, or InvalidIdentifier for prefixes
        Directory(mutate(SIGNED), trust_anchor=node_public_key(KEYS["super"]))  # type: ignore[operator]
    assert reason in str(info.value)


def test_a_directory_signed_by_another_super_is_refused() -> None:
    other = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(Forbidden, match="not the trusted one"):
        Directory(SIGNED, trust_anchor=node_public_key(other))


def test_parent_loops_are_refused() -> None:
    looped = [
        SIGNED[0],
        _resign(SIGNED[1], "bb2", parent="bb2"),
        _resign(SIGNED[2], "bb1", parent="bb1"),
    ]
    with pytest.raises(Forbidden, match="loop"):
        Directory(looped, trust_anchor=node_public_key(KEYS["super"]))


def test_delegations_round_trip_through_json() -> None:
    again = [Delegation.from_json(d.to_json()) for d in SIGNED]
    assert again == SIGNED
    Directory(again, trust_anchor=node_public_key(KEYS["super"]))
