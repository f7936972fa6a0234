"""GS1 keys (GTIN-8/12/13/14, GLN, SSCC): length, digits and the mod-10 check digit.

Rule (GS1 General Specifications §7.9.1): from the rightmost data digit leftwards,
weights 3, 1, 3, 1, ...; check = (10 - sum mod 10) mod 10.
"""

from __future__ import annotations

from schemas.errors import InvalidIdentifier
from schemas.identifiers.model import Identifier, Namespace, RoutingKey, Scheme
from schemas.identifiers.text import DIGITS, first_not_in

GTIN_LENGTHS = (8, 12, 13, 14)
GLN_LENGTH = 13
SSCC_LENGTH = 18

# Where the GS1 Company Prefix starts in the canonical form: GTIN-14 begins with
# its indicator digit, SSCC with its extension digit, GLN with the prefix itself.
_PREFIX_START = {Scheme.GTIN: 1, Scheme.GLN: 0, Scheme.SSCC: 1}
_CANONICAL_LENGTH = {Scheme.GTIN: 14, Scheme.GLN: GLN_LENGTH, Scheme.SSCC: SSCC_LENGTH}


def check_digit(data: str) -> int:
    """The mod-10 check digit for ``data`` (all digits, check digit not included)."""
    total = 0
    for i, ch in enumerate(reversed(data)):
        total += int(ch) * (3 if i % 2 == 0 else 1)
    return (10 - total % 10) % 10


def parse_gs1_key(
    text: str, scheme: Scheme | None = None, *, offset: int = 0, whole: str | None = None
) -> Identifier:
    """Parse the digits of a GS1 key; ``scheme`` None infers it from the length.

    ``offset`` and ``whole`` let a caller that found the key inside a larger input
    (``gln:...``, a Digital Link path) report positions in that input.
    """
    source = whole if whole is not None else text
    bad = first_not_in(text, DIGITS)
    if bad is not None:
        raise InvalidIdentifier(
            source,
            f"{text[bad]!r} is not a digit",
            position=offset + bad,
            scheme=str(scheme or "GS1"),
        )
    n = len(text)
    if scheme is None:
        if n in GTIN_LENGTHS:
            scheme = Scheme.GTIN
        elif n == SSCC_LENGTH:
            scheme = Scheme.SSCC
        else:
            raise InvalidIdentifier(
                source,
                f"{n} digits is no GS1 key length (GTIN 8, 12, 13 or 14; SSCC 18); "
                "write gln:<13 digits> for a GLN, ecode:<digits> for an Ecode",
                scheme="GS1",
            )
    allowed = GTIN_LENGTHS if scheme is Scheme.GTIN else (_CANONICAL_LENGTH[scheme],)
    if n not in allowed:
        want = " or ".join(str(x) for x in allowed)
        raise InvalidIdentifier(
            source, f"a {scheme.upper()} has {want} digits, not {n}", scheme=str(scheme)
        )
    expected = check_digit(text[:-1])
    if int(text[-1]) != expected:
        raise InvalidIdentifier(
            source,
            f"wrong check digit {text[-1]}, expected {expected}",
            position=offset + n - 1,
            scheme=str(scheme),
        )
    digits = text.rjust(_CANONICAL_LENGTH[scheme], "0")
    labels = tuple(digits[_PREFIX_START[scheme] :])
    # 13 bare digits read back as a GTIN-13, so a GLN keeps its label to stay a GLN
    canonical = "gln:" + digits if scheme is Scheme.GLN else digits
    return Identifier(
        scheme=scheme,
        canonical=canonical,
        routing=RoutingKey(namespace=Namespace.GS1, labels=labels),
    )
