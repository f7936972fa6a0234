"""The <RequestDigest> a response carries when its request set the RD flag (RFC 3652 §2.2.3).

It is the digest of the request's header and body exactly as received (not its envelope
nor its credential): CNRI ``AbstractResponse.takeDigestOfRequest`` over
``getEncodedMessageBody()``. The client recomputes it over what it sent and throws
SECURITY_ALERT on a mismatch, or when the response carries none.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from schemas.handle_wire.codes import DigestAlgorithm
from schemas.handle_wire.errors import cannot_encode
from schemas.handle_wire.limits import MAX_STRING
from schemas.handle_wire.wire import Reader, Writer

# Fixed digest sizes (CNRI Common.MD5_DIGEST_SIZE, SHA1_DIGEST_SIZE, SHA256_DIGEST_SIZE).
DIGEST_SIZES: dict[int, int] = {
    DigestAlgorithm.MD5: 16,
    DigestAlgorithm.SHA1: 20,
    DigestAlgorithm.SHA256: 32,
}
_HASHES = {
    DigestAlgorithm.MD5_OLD_FORMAT: "md5",
    DigestAlgorithm.MD5: "md5",
    DigestAlgorithm.SHA1: "sha1",
    DigestAlgorithm.SHA256: "sha256",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestDigest:
    """An algorithm octet and the digest: fixed-size for MD5 (1), SHA-1 (2), SHA-256 (3);
    length-prefixed in CNRI's pre-2.1 form (0), whose octet is the top of a 4-byte length."""

    algorithm: DigestAlgorithm
    digest: bytes

    @classmethod
    def of(cls, request_bytes: bytes, algorithm: DigestAlgorithm) -> RequestDigest:
        """The digest of a request's header and body, ``request_bytes``."""
        return cls(
            algorithm=algorithm, digest=hashlib.new(_HASHES[algorithm], request_bytes).digest()
        )

    def matches(self, request_bytes: bytes) -> bool:
        return self == RequestDigest.of(request_bytes, self.algorithm)

    def write(self, w: Writer) -> None:
        if self.algorithm == DigestAlgorithm.MD5_OLD_FORMAT:
            w.octets(self.digest, "request_digest", cap=MAX_STRING)
            return
        if DIGEST_SIZES[self.algorithm] != len(self.digest):
            raise cannot_encode(
                f"a {self.algorithm.name} digest is {DIGEST_SIZES[self.algorithm]} bytes, "
                f"not {len(self.digest)}",
                field="request_digest",
            )
        w.u8(self.algorithm, "request_digest algorithm")
        w.raw(self.digest)

    @classmethod
    def read(cls, r: Reader) -> RequestDigest:
        at = r.offset
        algorithm = r.u8("request_digest algorithm")
        if algorithm == DigestAlgorithm.MD5_OLD_FORMAT:
            length = int.from_bytes(r.raw(3, "request_digest length"), "big")
            if length > MAX_STRING or length > r.remaining:
                raise r.error(
                    f"request_digest length {length} exceeds the {r.remaining} bytes left",
                    field="request_digest",
                    offset=at,
                )
            return cls(
                algorithm=DigestAlgorithm.MD5_OLD_FORMAT, digest=r.raw(length, "request_digest")
            )
        try:
            known = DigestAlgorithm(algorithm)
        except ValueError:
            raise r.error(
                f"unknown digest algorithm {algorithm}", field="request_digest", offset=at
            ) from None
        return cls(algorithm=known, digest=r.raw(DIGEST_SIZES[known], "request_digest"))
