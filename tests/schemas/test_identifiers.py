"""Identifier grammar: valid and invalid vectors for every scheme, and round trips."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.errors import InvalidIdentifier
from schemas.identifiers import Scheme, check_digit, parse
from schemas.identifiers.did import b58encode
from schemas.identifiers.text import MAX_INPUT_CHARS

# A 22-byte suffix in each did:bid encoding
_RAW = bytes(range(1, 23))
B58 = b58encode(_RAW)
B64 = base64.urlsafe_b64encode(_RAW).decode().rstrip("=")
BECH32 = "".join(
    "qpzry9x8gf2tvdw0s3jn54khce6mua7l"[int(bits, 2)]
    for bits in (lambda b: [b[i : i + 5].ljust(5, "0") for i in range(0, len(b), 5)])(
        "".join(f"{x:08b}" for x in _RAW)
    )
)


@pytest.mark.parametrize(
    ("text", "scheme", "canonical", "routing_key"),
    [
        ("88.100.1/ABC-123", Scheme.HANDLE, "88.100.1/ABC-123", "handle:88.100.1"),
        ("86.1000.12/x", Scheme.HANDLE, "86.1000.12/x", "handle:86.1000.12"),
        ("10.1000/xyz", Scheme.HANDLE, "10.1000/XYZ", "handle:10.1000"),
        ("doi:10.1000/abc.def", Scheme.HANDLE, "10.1000/ABC.DEF", "handle:10.1000"),
        ("hdl:20.500.12345/a/b", Scheme.HANDLE, "20.500.12345/a/b", "handle:20.500.12345"),
        ("0.na/88.100.1", Scheme.HANDLE, "0.NA/88.100.1", "handle:0.NA"),
        ("88.100.1/产品-001", Scheme.HANDLE, "88.100.1/产品-001", "handle:88.100.1"),
        ("06901234567892", Scheme.GTIN, "06901234567892", "gs1:6901234567892"),
        ("6901234567892", Scheme.GTIN, "06901234567892", "gs1:6901234567892"),
        ("4006381333931", Scheme.GTIN, "04006381333931", "gs1:4006381333931"),
        ("036000291452", Scheme.GTIN, "00036000291452", "gs1:0036000291452"),
        ("96385074", Scheme.GTIN, "00000096385074", "gs1:0000096385074"),
        ("gtin:09506000134352", Scheme.GTIN, "09506000134352", "gs1:9506000134352"),
        ("106141411234567897", Scheme.SSCC, "106141411234567897", "gs1:06141411234567897"),
        ("gln:5412345000013", Scheme.GLN, "gln:5412345000013", "gs1:5412345000013"),
        ("1.2.156.3001.1", Scheme.OID, "1.2.156.3001.1", "oid:1.2.156.3001.1"),
        ("urn:oid:2.16.156.1", Scheme.OID, "2.16.156.1", "oid:2.16.156.1"),
        ("oid:0.39", Scheme.OID, "0.39", "oid:0.39"),
        ("2.999.0", Scheme.OID, "2.999.0", "oid:2.999.0"),
        (
            "ecode:10001000000000000001",
            Scheme.ECODE,
            "ecode:10001000000000000001",
            "ecode:10001000000000000001",
        ),
        ("ecode:2123456781", Scheme.ECODE, "ecode:2123456781", "ecode:2123456781"),
        (f"did:bid:ab12:ef{B58}", Scheme.DID_BID, f"did:bid:ab12:ef{B58}", "bid:ab12"),
        (f"did:bid:ef{B58}", Scheme.DID_BID, f"did:bid:ef{B58}", "bid:"),
        (f"did:bid:zz99:zs{B64}", Scheme.DID_BID, f"did:bid:zz99:zs{B64}", "bid:zz99"),
        (f"did:bid:st{BECH32}", Scheme.DID_BID, f"did:bid:st{BECH32}", "bid:"),
        ("did:cn:88.100.1", Scheme.DID_CN, "did:cn:88.100.1", "handle:88.100.1"),
    ],
)
def test_valid_identifiers_parse_to_canonical_form_and_routing_key(
    text: str, scheme: Scheme, canonical: str, routing_key: str
) -> None:
    ident = parse(text)
    assert (ident.scheme, ident.canonical, str(ident.routing)) == (scheme, canonical, routing_key)


@pytest.mark.parametrize(
    ("text", "position", "reason"),
    [
        ("", None, "empty input"),
        (" 88.100.1/A", 0, "whitespace"),
        ("88.100.1/A B", 10, "whitespace"),
        ("88.100.1/A\n", 10, "whitespace"),
        ("88.100.1/A\x00", 10, "control"),
        ("88.100.1/A\u200b", 10, "control"),  # zero-width space, format character
        ("88.100.1/\udcff", 9, "not valid UTF-8"),
        ("x" * 1_000_000, None, "no identifier exceeds"),
        ("88.100.1/", 9, "empty suffix"),
        ("/ABC", 0, "empty prefix"),
        ("88..1/ABC", 3, "empty prefix segment"),
        ("88.1#0/ABC", 4, "not allowed in a prefix"),
        ("88.100.1/" + "a" * 250, 255, "at most 255"),
        ("06901234567891", 13, "wrong check digit 1, expected 2"),
        ("gtin:069012345678901", None, "not 15"),
        ("690123456789", 11, "expected 7"),
        ("1234567", None, "no GS1 key length"),
        ("gln:541234500001X", 16, "not a digit"),
        ("gln:06901234567892", None, "13 digits, not 14"),
        ("sscc:106141411234567890", 22, "expected 7"),
        ("1.02.3", 2, "leading zero"),
        ("3.1", 0, "must be 0, 1 or 2"),
        ("1.40", 2, "at most 39"),
        ("1", None, "no GS1 key length"),
        ("oid:1", None, "at least two arcs"),
        ("1.2.", 4, "empty arc"),
        ("oid:1.2.x", 8, "not a digit"),
        ("1." + "1." * 60 + "1", 100, "at most 100"),
        ("ecode:", 6, "no digits"),
        ("ecode:0123", 6, "reserved for GS1"),
        ("ecode:3123", 6, "not supported"),
        ("ecode:1000", 10, "NSI"),
        ("ecode:1" + "0" * 4 + "1" * 21, 31, "allows 20"),
        ("ecode:12a4", 8, "not a digit"),
        ("did:web:example.com", 4, "not served"),
        ("did:bid:AB12:ef" + B58, 8, "4 lowercase"),
        ("did:bid:ab1:ef" + B58, 8, "4 lowercase"),
        ("did:bid:ab12:xf" + B58, 13, "key type 'x'"),
        ("did:bid:ab12:eq" + B58, 14, "encoding 'q'"),
        ("did:bid:ab12:ef" + B58 + "0", 44, "not a Base58"),
        ("did:bid:ab12:ef" + B58[:-3], 15, "suffix decodes to 19 bytes"),
        ("did:bid:ab12:ef" + B58 + "zz", 15, "decodes to 23 bytes"),
        ("did:bid:a:b:c", 11, "too many"),
        ("did:bid:ab12:es" + B64 + "=", 45, "not a Base64url"),
        ("did:cn:88..1", 10, "empty prefix segment"),
        ("https://example.com", None, "no path"),
        ("https:///01/09506000134352", 8, "no host"),
        ("https://id.example.com/02/09506000134352", 22, "no primary key"),
        ("https://id.example.com/01/09506000134353", 39, "expected 2"),
        ("https://id.example.com/01/09506000134352/21/S1/10/L1", 47, "out of order"),
        ("https://id.example.com/01/09506000134352/254/X", 41, "not a qualifier of AI 01"),
        ("https://id.example.com/01/09506000134352/10", 41, "has no value"),
        ("https://id.example.com/01/09506000134352/10/" + "L" * 21, 44, "at most 20"),
        ("https://id.example.com/01/09506000134352/10/A%7EB", 45, "character set 82"),
        ("https://id.example.com/01/09506000134352/10/%FF", 44, "not UTF-8"),
        ("urn:isbn:123", 0, "unknown scheme 'urn'"),
        ("abc", 0, "unknown scheme"),
        ("12.ab", 0, "unknown scheme"),
    ],
)
def test_invalid_identifiers_name_position_and_reason(
    text: str, position: int | None, reason: str
) -> None:
    with pytest.raises(InvalidIdentifier) as info:
        parse(text)
    assert info.value.position == position
    assert reason in info.value.reason
    assert info.value.response_code == 102


def test_error_message_shows_where_and_why_but_not_a_megabyte_of_input() -> None:
    with pytest.raises(InvalidIdentifier) as info:
        parse("9" * 1_000_000)
    assert len(info.value.message) < 300
    assert "1000000 characters" in info.value.message


def test_digital_link_resolves_to_its_primary_key_with_qualifiers() -> None:
    ident = parse("https://brand.example.com/shop/01/9506000134352/10/LOT%2F7/21/S1?linkType=x#f")
    assert ident.scheme is Scheme.GTIN
    assert ident.canonical == "09506000134352"
    assert ident.qualifiers == (("10", "LOT/7"), ("21", "S1"))
    assert ident.uri == "https://id.gs1.org/01/09506000134352/10/LOT%2F7/21/S1"


@pytest.mark.parametrize(
    ("text", "scheme", "canonical"),
    [
        ("https://id.gs1.org/00/106141411234567897", Scheme.SSCC, "106141411234567897"),
        ("http://x.example/414/5412345000013/254/A1/", Scheme.GLN, "gln:5412345000013"),
    ],
)
def test_digital_link_other_primary_keys(text: str, scheme: Scheme, canonical: str) -> None:
    ident = parse(text)
    assert (ident.scheme, ident.canonical) == (scheme, canonical)


def test_a_gtin_and_its_digital_link_share_a_canonical_form() -> None:
    assert (
        parse("6901234567892").canonical
        == parse("https://id.example.com/01/06901234567892").canonical
    )


def test_input_limit_is_the_documented_constant() -> None:
    parse("88.1/" + "a" * 250)  # under both limits
    with pytest.raises(InvalidIdentifier):
        parse("a" * (MAX_INPUT_CHARS + 1))


# --- property tests -----------------------------------------------------------------


@given(
    st.sampled_from([7, 11, 12, 13]).flatmap(
        lambda n: st.text(alphabet="0123456789", min_size=n, max_size=n)
    )
)
def test_any_gtin_with_its_check_digit_parses_and_any_other_digit_fails(data: str) -> None:
    good = data + str(check_digit(data))
    ident = parse(good)
    assert ident.canonical == good.rjust(14, "0")
    assert parse(ident.canonical).canonical == ident.canonical
    bad = data + str((check_digit(data) + 1) % 10)
    with pytest.raises(InvalidIdentifier) as info:
        parse(bad)
    assert info.value.position == len(bad) - 1


_segment = st.text(alphabet="0123456789abcdefXYZ-_", min_size=1, max_size=6)
_suffix = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp")),
    min_size=1,
    max_size=40,
).filter(lambda s: not any(c.isspace() for c in s))


@given(st.lists(_segment, min_size=1, max_size=4), _suffix)
def test_handle_canonical_form_is_a_fixed_point(segments: list[str], suffix: str) -> None:
    text = ".".join(segments) + "/" + suffix
    ident = parse(text)
    assert ident.scheme is Scheme.HANDLE
    assert parse(ident.canonical) == ident
    assert ident.routing.labels == tuple(s.upper() for s in segments)


@given(
    st.sampled_from(["0", "1", "2"]),
    st.integers(0, 39),
    st.lists(st.integers(0, 10**9), max_size=8),
)
def test_oid_round_trip(first: str, second: int, rest: list[int]) -> None:
    text = ".".join([first, str(second), *map(str, rest)])
    ident = parse(text)
    assert ident.canonical == text
    assert parse("urn:oid:" + text) == ident


@given(
    st.binary(min_size=22, max_size=22),
    st.sampled_from(["", "ab12:", "0000:"]),
    st.sampled_from("ezs"),
)
def test_did_bid_base58_round_trip(raw: bytes, code: str, key_type: str) -> None:
    text = f"did:bid:{code}{key_type}f{b58encode(raw)}"
    ident = parse(text)
    assert ident.canonical == text
    assert ident.routing.labels == ((code[:4],) if code else ())


@given(st.text(min_size=0, max_size=300))
def test_parse_never_fails_with_anything_but_invalid_identifier(text: str) -> None:
    try:
        ident = parse(text)
    except InvalidIdentifier as exc:
        position = exc.position
        assert position is None or 0 <= position <= len(text)
        return
    assert parse(ident.canonical).canonical == ident.canonical
