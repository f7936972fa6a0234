"""The OpenAPI patterns against the parsers: every identifier the parser takes matches,
and what matches is refused only for what the pattern says it cannot state."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.errors import InvalidIdentifier
from schemas.identifiers import parse
from schemas.identifiers.base58 import b58encode
from schemas.identifiers.pattern import IDENTIFIER, NOT_IN_PATTERN_REASONS, PREFIX
from schemas.identifiers.prefix import parse_prefix

ACCEPTED = [
    "88.100.1/ABC-123",
    "0.NA/88.100",
    "88.100.1/é€/with/slashes?and#more",
    "hdl:88.100/x",
    "HDL:88.100/x",
    "doi:10.1000/abc",
    "06901234567892",
    "96385074",
    "614141000036",
    "gtin:06901234567892",
    "GLN:6901234567892",
    "sscc:106141411234567897",
    "106141411234567897",
    "1.2.156.3001.1",
    "2.999",
    "urn:oid:1.2.156",
    "oid:0.39",
    "ecode:10001123",
    "ecode:2000000011",
    "did:cn:88.100.1",
    "DID:BID:ef" + b58encode(bytes(range(1, 23))),
    "did:bid:ab12:sf" + "A" * 30,
    "https://id.gs1.org/01/09506000134352/10/ABC%2F1/21/x",
    "https://example.com/a/b/01/09506000134352/?q=1",
    "HTTP://example.com/414/9506000134352/254/%zz",
    "http://e.x/00/106141411234567897#frag",
]
REFUSED = [
    "0",
    "12",
    "1.40",
    "3.1",
    "1.02",
    "88..1/x",
    "88.100/",
    "did:foo:x",
    "did:bid:xf1111",
    "https://x/02/1",
    "https://x/01/09506000134352/21/x/10/y",
    "doi:11.1/x",
    "doi:10/x",
    "ecode:0123456",
    "ecode:3123456",
    "88.100.1/a b",
    "gln:06901234567892",
]


@pytest.mark.parametrize("text", ACCEPTED)
def test_an_identifier_the_parser_takes_matches_the_pattern(text: str) -> None:
    parse(text)
    assert re.fullmatch(IDENTIFIER, text)


@pytest.mark.parametrize("text", REFUSED)
def test_an_identifier_of_no_scheme_s_syntax_does_not_match(text: str) -> None:
    with pytest.raises(InvalidIdentifier):
        parse(text)
    assert not re.fullmatch(IDENTIFIER, text)


@settings(max_examples=300, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.from_regex(IDENTIFIER, fullmatch=True))
def test_what_the_pattern_allows_is_refused_only_for_what_it_cannot_state(text: str) -> None:
    assert _refusal(text) in (None, *NOT_IN_PATTERN_REASONS)


def _refusal(text: str) -> str | None:
    """Which of NOT_IN_PATTERN_REASONS the parser refuses ``text`` for, its whole
    reason if none, or None if it takes it."""
    try:
        parse(text)
    except InvalidIdentifier as exc:
        return next((w for w in NOT_IN_PATTERN_REASONS if w in exc.reason), exc.reason)
    return None


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("88.100.1", True),
        ("gs1:690123", True),
        ("oid:1.2.156", True),
        ("ecode:1000", True),
        ("bid:ab12", True),
        ("", False),
        ("88..1", False),
        ("gs1:", False),
        ("oid:1.02", False),
        ("bid:AB12", False),
        ("GS1:690123", False),
        ("foo:1", False),
    ],
)
def test_the_prefix_pattern_is_the_prefix_parser(text: str, ok: bool) -> None:
    try:
        parse_prefix(text)
        parsed = True
    except InvalidIdentifier:
        parsed = False
    assert parsed is ok
    assert bool(re.fullmatch(PREFIX, text)) is ok
