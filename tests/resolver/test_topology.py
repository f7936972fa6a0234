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
        name="bb1",
        role=Role.BACKBONE,
        parent="super",
        url="http://b1",
        prefixes=("88", "gs1:6", "bid:ab12"),
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
        # bb2 gives its child c a piece of 88.100, outside bb2's own space
        (
            lambda ds: [*ds[:4], _resign(ds[4], "bb2", prefixes=("88.100.1",))],
            "'bb2' gives 'c' handle:88.100.1, which is outside its own prefixes",
        ),
        # the super node may give anything, but not what another branch holds
        (
            lambda ds: [
                *ds[:2],
                _resign(ds[2], "super", prefixes=(*ds[2].prefixes, "88.100.1")),
                *ds[3:],
            ],
            "'bb2' is given handle:88.100.1, inside handle:88 of 'bb1'",
        ),
        (
            lambda ds: [
                *ds[:2],
                _resign(ds[2], "super", prefixes=(*ds[2].prefixes, "88")),
                *ds[3:],
            ],
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


def test_a_handle_face_is_signed_with_the_delegation_and_only_as_address_and_port() -> None:
    faced = _resign(SIGNED[1], "super", handle="127.0.54.2:2641")
    again = Delegation.from_json(faced.to_json())
    assert again.handle == "127.0.54.2:2641"
    Directory([SIGNED[0], again, *SIGNED[2:]], trust_anchor=node_public_key(KEYS["super"]))
    # the field is signed: changing it breaks the signature
    moved = dataclasses.replace(again, handle="127.0.54.9:2641")
    with pytest.raises(Forbidden):
        Directory([SIGNED[0], moved, *SIGNED[2:]], trust_anchor=node_public_key(KEYS["super"]))
    v6 = Delegation.from_json({**faced.to_json(), "handle": "[2001:db8::1]:2641"})
    assert v6.handle == "[2001:db8::1]:2641"
    for bad in ("127.0.54.2", "host.example:2641", "127.0.54.2:0", "[2001:DB8::1]:2641", 2641):
        with pytest.raises(IdresError, match="handle"):
            Delegation.from_json({**faced.to_json(), "handle": bad})


def _new(name: str, role: Role, parent: str, prefixes: tuple[str, ...], by: str) -> Delegation:
    """A delegation of a new node ``name``, signed with ``by``'s key."""
    key = ed25519.Ed25519PrivateKey.generate()
    KEYS.setdefault(name, key)
    unsigned = Delegation(
        name=name,
        role=role,
        url=f"http://{name}",
        parent=parent,
        prefixes=prefixes,
        public_key=node_public_key(KEYS[name]),
        issued=1,
    )
    return sign_delegation(unsigned, KEYS[by])


# Each row is refused both in a whole directory and when added to a running one.
ROGUE = [
    # the attack: sub-chain a's operator signs a child that claims the world
    (
        _new("evil", Role.SUBCHAIN, "a", ("0.NA", "88.300", "gs1:61", "10"), by="a"),
        "sub-chain node 'a' may not delegate",
    ),
    (_new("evil2", Role.SUBCHAIN, "a", ("88.100.5",), by="a"), "sub-chain node 'a' may not"),
    (_new("bb3", Role.BACKBONE, "bb1", ("88.7",), by="bb1"), "sub-chain nodes only"),
    (_new("s2", Role.SUPER, "super", ("99",), by="super"), "claims the super role"),
    (_new("x", Role.SUBCHAIN, "bb1", ("86.5",), by="bb1"), "outside its own prefixes"),
    (_new("y", Role.SUBCHAIN, "bb1", ("10",), by="bb1"), "outside its own prefixes"),
    (_new("z", Role.SUBCHAIN, "bb1", ("88.100.9",), by="bb1"), "inside handle:88.100 of 'a'"),
    (
        _new("w", Role.SUBCHAIN, "bb1", ("88",), by="bb1"),
        "covers handle:88.100 of 'a'|inside handle:88 of 'w'",
    ),
    (_new("na", Role.BACKBONE, "super", ("0.NA",), by="super"), "handle prefix 0 is reserved"),
    (_new("na2", Role.BACKBONE, "super", ("0",), by="super"), "handle prefix 0 is reserved"),
    (_new("forged", Role.SUBCHAIN, "bb1", ("88.5",), by="bb2"), "not signed by 'bb1'"),
    (_new("bad name", Role.SUBCHAIN, "bb1", ("88.5",), by="bb1"), "must be 1 to 64"),
    (
        _new("many", Role.SUBCHAIN, "bb1", tuple(f"88.{n}" for n in range(200, 265)), by="bb1"),
        "at most 64",
    ),
]


@pytest.mark.parametrize(("rogue", "reason"), ROGUE, ids=[r.name for r, _ in ROGUE])
def test_a_delegation_outside_its_issuers_role_or_space_is_refused(
    rogue: Delegation, reason: str
) -> None:
    with pytest.raises(Forbidden, match=reason):
        Directory([*SIGNED, rogue], trust_anchor=node_public_key(KEYS["super"]))
    with pytest.raises(Forbidden, match=reason):
        DIRECTORY.with_delegation(rogue)


def test_a_backbone_may_delegate_inside_its_own_space() -> None:
    child = _new("d", Role.SUBCHAIN, "bb1", ("88.300", "gs1:61"), by="bb1")
    grown = DIRECTORY.with_delegation(child)
    assert grown.route("super", parse("88.300.1/X").routing).authority == child
    assert Directory([*SIGNED, child], trust_anchor=node_public_key(KEYS["super"])).by_name == (
        grown.by_name
    )
    assert "d" not in DIRECTORY.by_name  # the old directory is unchanged


def test_a_prefix_handed_down_whole_belongs_to_the_child() -> None:
    # bb1 and its child a both name bid:ab12: a holds it, bb1 keeps no record of it
    ident = parse("did:bid:ab12:efGsChQR2U32pvwJcDNPoYHhGXL1Rgq")
    assert DIRECTORY.route("bb1", ident.routing).authority == DIRECTORY.by_name["a"]
    assert [str(p) for p in DIRECTORY.kept_prefixes("bb1")] == ["handle:88", "gs1:6"]
    assert len(DIRECTORY.kept_prefixes("a")) == 3
