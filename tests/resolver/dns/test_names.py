"""The name mapping, both ways: a table of names, and round trips under case folding."""

from __future__ import annotations

import dns.name
import pytest
from hypothesis import given
from hypothesis import strategies as st

from resolver.dns.names import Inner, Named, NodeHost, cuts, locate, owner, zone_name
from schemas.errors import InvalidIdentifier
from schemas.identifiers import Namespace, RoutingKey, parse
from schemas.identifiers.did import b58encode
from schemas.identifiers.prefix import parse_prefix

ZONE = zone_name("idres.internal.")
DID = "did:bid:ab12:ef" + b58encode(bytes(range(1, 23)))


@pytest.mark.parametrize(
    ("identifier", "name"),
    [
        # ONS 2.0.1: indicator digit first, then the rest without the check digit, reversed
        ("00614141322602", "0.0.6.2.2.3.1.4.1.4.1.6.0.gtin.gs1.id"),
        ("06901234567892", "0.9.8.7.6.5.4.3.2.1.0.9.6.gtin.gs1.id"),
        ("gln:0614141000012", "1.0.0.0.0.1.4.1.4.1.6.0.gln.gs1.id"),
        ("106141411234567897", "1.9.8.7.6.5.4.3.2.1.1.4.1.4.1.6.0.sscc.gs1.id"),
        ("1.2.156.3001.1", "1.3001.156.2.1.oid-res"),  # X.672: arcs reversed
        ("ecode:10001000000000000001", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.1.ecode"),
        ("88.100.1/ABC-123", "ABC-123._.1.100.88.handle"),
        ("88.100.1/abc", "lc-abc._.1.100.88.handle"),  # lowercase only: marked
        ("88.100.1/aBc", "b32-mfbgg._.1.100.88.handle"),  # both cases: base32
        ("88.100.1/LC-X", "b32-jrbs2wa._.1.100.88.handle"),  # starts with a mark: base32
        ("10.1000/xyz", "XYZ._.1000.10.handle"),  # a DOI is upper case already
    ],
)
def test_identifiers_map_to_names_and_back(identifier: str, name: str) -> None:
    ident = parse(identifier)
    found = owner(ident, ZONE)
    assert found == dns.name.from_text(name, ZONE)
    assert locate(found, ZONE) == Named(ident)


@pytest.mark.parametrize(
    ("name", "place"),
    [
        ("", Inner(None)),
        ("gs1.id", Inner(None)),
        (
            "1.4.1.6.0.gtin.gs1.id",
            Inner(RoutingKey(namespace=Namespace.GS1, labels=tuple("06141"))),
        ),
        ("handle", Inner(RoutingKey(namespace=Namespace.HANDLE, labels=()))),
        ("100.88.handle", Inner(RoutingKey(namespace=Namespace.HANDLE, labels=("88", "100")))),
        ("_.100.88.handle", Inner(RoutingKey(namespace=Namespace.HANDLE, labels=("88", "100")))),
        ("AB12.bid", Inner(RoutingKey(namespace=Namespace.BID, labels=("ab12",)))),
        ("sub-A.ns", NodeHost("sub-a")),
        ("x.y._.100.88.handle", None),  # nothing under a suffix
        ("_.handle", None),  # a suffix needs a prefix
        ("12.gtin.gs1.id", None),  # one digit a label
        ("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.gtin.gs1.id", None),  # too many digits
        ("~!!.1.100.88.handle", None),
        ("b32-mfrgg._.1.100.88.handle", None),  # "abc" is written lc-abc: one spelling
        ("b32-ifbeg._.1.100.88.handle", None),  # "ABC" is written as itself
        ("X._._.88.handle", None),  # a segment "_" has no names
        ("01.2.oid-res", None),  # a leading zero
        ("www", None),
    ],
)
def test_names_that_are_not_identifiers(name: str, place: object) -> None:
    assert locate(dns.name.from_text(name, ZONE) if name else ZONE, ZONE) == place


@pytest.mark.parametrize(
    ("prefix", "names"),
    [
        ("88.100", ["100.88.handle"]),
        ("gs1:690", ["0.9.6.gtin.gs1.id", "0.9.6.gln.gs1.id", "0.9.6.sscc.gs1.id"]),
        ("oid:1.2.156", ["156.2.1.oid-res"]),
        ("bid:ab12", ["ab12.bid"]),
    ],
)
def test_each_prefix_is_cut_where_its_names_start(prefix: str, names: list[str]) -> None:
    assert list(cuts(parse_prefix(prefix), ZONE)) == [dns.name.from_text(n, ZONE) for n in names]


suffixes = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x2FF, exclude_characters="/"),
    min_size=1,
    max_size=20,
)


@given(suffix=suffixes, flips=st.lists(st.booleans(), min_size=70, max_size=70))
def test_a_handle_survives_any_case_the_name_arrives_in(suffix: str, flips: list[bool]) -> None:
    try:
        ident = parse("88.100.1/" + suffix)
    except InvalidIdentifier:
        return
    name = owner(ident, ZONE)
    if name is None:  # over a label's 63 bytes
        return
    folded = dns.name.Name(
        tuple(
            bytes(
                c ^ 0x20 if flip and chr(c).isalpha() and c < 0x80 else c
                for c, flip in zip(label, flips, strict=False)
            )
            for label in name.labels
        )
    )
    assert locate(folded, ZONE) == Named(ident)


def test_a_bech32_did_bid_id_has_a_name() -> None:
    bech32 = "did:bid:ab12:et" + "q" * 36  # 22 bytes in the Bech32 alphabet
    ident = parse(bech32)
    name = owner(ident, ZONE)
    assert name is not None
    assert name.labels[0].startswith(b"lc-")
    assert locate(name, ZONE) == Named(ident)


def test_a_did_bid_id_survives_lowercasing() -> None:
    ident = parse(DID)
    name = owner(ident, ZONE)
    assert name is not None
    lowered = dns.name.from_text(name.to_text().lower())
    assert locate(lowered, ZONE) == Named(ident)
