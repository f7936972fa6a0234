"""The directory a node grows from the log: forged, early, over-rate and malformed
delegations, each answered without re-verifying the whole directory."""

from __future__ import annotations

import dataclasses

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from idres.assembly import node_public_key
from resolver.topology import Delegation, Directory, Role, sign_delegation
from schemas.errors import EncodingError
from sync.directory import LiveDirectory, decode_delegation
from tests.resolver.test_topology import KEYS, SIGNED


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def live() -> tuple[LiveDirectory, Clock]:
    clock = Clock()
    anchor = node_public_key(KEYS["super"])
    return LiveDirectory(Directory(SIGNED, trust_anchor=anchor), anchor, clock=clock), clock


def child(name: str, parent: str, prefixes: tuple[str, ...], *, by: str = "") -> Delegation:
    """A delegation signed by its parent's key; the child's own key kept in KEYS."""
    key = KEYS.setdefault(name, ed25519.Ed25519PrivateKey.generate())
    unsigned = Delegation(
        name=name,
        role=Role.SUBCHAIN if parent != "super" else Role.BACKBONE,
        url=f"http://{name}",
        parent=parent,
        prefixes=prefixes,
        public_key=node_public_key(key),
        issued=10,
    )
    return sign_delegation(unsigned, KEYS[by or parent])


def test_a_forged_replacement_is_refused_on_its_signature() -> None:
    directory, _ = live()
    victim = directory().by_name["a"]
    forged = dataclasses.replace(victim, issued=victim.issued + 1, prefixes=("88",))
    taken, refused = directory.adopt([forged])
    assert taken == 0
    assert refused[0].reason == "does not verify: delegation of 'a' is not signed by 'bb1'"
    assert directory().by_name["a"] == victim


def test_forgeries_do_not_spend_the_issuers_rate() -> None:
    directory, _ = live()
    forged = [
        dataclasses.replace(child(f"f{n}", "super", (f"7{n}",)), signature=bytes(64))
        for n in range(600)
    ]
    _, refused = directory.adopt(forged)
    assert len(refused) == 600
    genuine = child("bb3", "super", ("99",))
    assert directory.adopt([genuine]) == (1, [])
    assert "bb3" in directory().by_name


def test_an_issuer_over_its_rate_waits_and_is_taken_later() -> None:
    directory, clock = live()
    burst = [child(f"s{n}", "bb1", (f"88.{300 + n}",)) for n in range(502)]
    taken, refused = directory.adopt(burst)
    assert (taken, refused) == (500, [])
    assert len(directory.pending) == 2
    clock.now += 1.0  # ten more a second
    assert directory.adopt([]) == (2, [])
    assert len(directory().by_name) == len(SIGNED) + 502


def test_a_child_announced_before_its_parent_waits_for_it() -> None:
    directory, _ = live()
    parent = child("bb9", "super", ("77",))
    early = child("s9", "bb9", ("77.1",))
    assert directory.adopt([early]) == (0, [])
    # a forged message of the same name waits beside it, and does not displace it
    forged = dataclasses.replace(early, signature=bytes(64))
    directory.adopt([forged])
    taken, refused = directory.adopt([parent])
    assert taken == 2
    assert [r.delegation for r in refused] == [forged]
    assert directory().by_name["s9"] == early


@pytest.mark.parametrize("issued", [float("inf"), 1.5, -1, 2**64, "10", True])
def test_a_delegation_whose_issue_time_is_not_an_integer_is_malformed(issued: object) -> None:
    message = {"v": 1, "delegation": {**SIGNED[1].to_json(), "issued": issued}}
    with pytest.raises(EncodingError, match="issued must be an integer"):
        decode_delegation(cbor2.dumps(message))
