"""Fuzzing, briefly, of what a write's signature headers go through: RFC 8941
structured fields in Signature-Input, Signature and Content-Digest, the signature
base, key ids and verification (RFC 9421, RFC 9530). Every input is verified or
refused with 401/403, never a 500."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from benchmarks.fuzz import seeds
from benchmarks.fuzz.targets import TARGETS, httpsig_fields
from registry.httpsig import parse_signature, signature_base, verify
from tests.fuzz.strategies import FUZZ, inputs, run


def test_every_seed_is_a_request_signed_right() -> None:
    for seed, key in zip(seeds.httpsig(), seeds.httpsig_public_keys(), strict=True):
        headers, _ = httpsig_fields(seed)
        params = parse_signature(headers)
        base = signature_base(
            params, method="PUT", path="/api/handles/88.100.1/X", query="", headers=headers
        )
        verify(params, base, key)  # raises Forbidden if the seed were not signed right
        assert TARGETS["httpsig"].call(seed)


@FUZZ
@given(data=inputs(seeds.httpsig()))
def test_signature_headers_are_verified_or_refused(data: bytes) -> None:
    run("httpsig", data)


# RFC 8941 items, parameters and inner lists, assembled from their pieces
_SF_PIECE = st.sampled_from(
    [
        "sig1=",
        '("@method" "@path")',
        ";created=",
        ";keyid=",
        '"300:0.NA/88.1"',
        ";alg=",
        "ed25519",
        "?1",
        "?0",
        ":AAAA:",
        ":",
        "(",
        ")",
        '"',
        "\\",
        ",",
        " ",
        "\t",
        "-",
        "0",
        "999999999999999",
        "9999999999999999",
        "1.5",
        "*",
        "sha-256=",
        "sha-512=",
        "a",
        ";",
    ]
)


@FUZZ
@given(
    signature_input=st.lists(_SF_PIECE, max_size=12).map("".join),
    signature=st.lists(_SF_PIECE, max_size=6).map("".join),
    digest=st.lists(_SF_PIECE, max_size=6).map("".join),
)
def test_structured_fields_built_from_their_pieces_are_parsed_or_refused(
    signature_input: str, signature: str, digest: str
) -> None:
    run("httpsig", "\n".join([signature_input, signature, digest, "h", "", ""]).encode())
