"""Compressed GS1 Digital Link URIs, decoded (vectors from GS1's digital-link.js)."""

from __future__ import annotations

import pytest

from schemas.errors import InvalidIdentifier
from schemas.identifiers.dl_compression import decompress, expand_path

HOST = "id.example.com"


@pytest.mark.parametrize(
    ("segment", "pairs"),
    [
        ("ARFKk4XBoA", [("01", "09506000134352")]),
        ("CxFKk4XBoMhZyfY", [("01", "09506000134352"), ("10", "LOT7")]),  # optimised 0B
        ("ARFKk4XBoCDIWcn2", [("01", "09506000134352"), ("10", "LOT7")]),  # not optimised
        (
            "GhFKk4XBoREGFDTK2LJmYkHgowOfBv0UMG21W",  # 1A: 01, 10, 17, 21 in string order
            [
                ("01", "09506000134352"),
                ("10", "ABC&+123"),
                ("17", "201231"),
                ("21", "12345"),
                ("foo", "bar"),
            ],
        ),
        ("nUKhilScLg4Q", [("254", "A1"), ("414", "9506000134369")]),  # 9D
    ],
)
def test_compressed_segments_decode_to_their_ais(
    segment: str, pairs: list[tuple[str, str]]
) -> None:
    assert decompress(segment, segment) == pairs


@pytest.mark.parametrize(
    ("path", "uri"),
    [
        ("ARFKk4XBoA", f"https://{HOST}/01/09506000134352"),
        ("ARFKk4XBoA/", f"https://{HOST}/01/09506000134352"),
        (
            "GhFKk4XBoREGFDTK2LJmYkHgowOfBv0UMG21W",
            f"https://{HOST}/01/09506000134352/10/ABC%26%2B123/21/12345?17=201231&foo=bar",
        ),
        ("nUKhilScLg4Q", f"https://{HOST}/414/9506000134369/254/A1"),
        ("01/09506000134352/10/LOT7", None),  # not compressed
        ("88.100.1/ABC", None),
        ("06901234567892", None),  # digits are a key, not compressed data
    ],
)
def test_paths_expand_to_uncompressed_digital_links(path: str, uri: str | None) -> None:
    assert expand_path(path, host=HOST) == uri


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("foo", "no optimisation is defined for 7E"),
        ("ARFKk4XB", "ends in the middle of a value"),
    ],
)
def test_broken_compressed_data_says_where(path: str, why: str) -> None:
    with pytest.raises(InvalidIdentifier, match=why) as info:
        expand_path(path, host=HOST)
    assert info.value.position is not None
