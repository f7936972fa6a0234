"""Base58 as BIF (Xinghuo) writes it: Bitcoin's scheme over BIF's own alphabet, in which
b/B and u/U trade places (caict-4iot-dev BIF SDK ``Base58.ALPHABET``). did:bid suffixes
with encoding 'f', BIF private keys and signatures are written in it."""

from __future__ import annotations

ALPHABET = "123456789AbCDEFGHJKLMNPQRSTuVWXYZaBcdefghijkmnopqrstUvwxyz"
CHARS = frozenset(ALPHABET)
_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}


def b58encode(data: bytes) -> str:
    """``data`` in BIF's Base58; each leading zero byte is a leading '1'."""
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(ALPHABET[r])
    zeros = len(data) - len(data.lstrip(b"\x00"))
    return ALPHABET[0] * zeros + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    """The bytes ``text`` writes; raises ValueError at a character not in the alphabet."""
    n = 0
    for k, ch in enumerate(text):
        value = _VALUE.get(ch)
        if value is None:
            raise ValueError(f"{ch!r} at position {k} is not a BIF Base58 character")
        n = n * 58 + value
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    zeros = len(text) - len(text.lstrip(ALPHABET[0]))
    return b"\x00" * zeros + body
