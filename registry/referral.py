"""Where a write that reached a node not holding its identifier is sent on.

The answer stays Handle's: 400 with responseCode 301 (server not responsible), now
with ``Location`` naming the same request at the node that holds the identifier. A
client that asks for redirects with ``Prefer: redirect`` (RFC 7240 §2: a preference,
which a server may ignore) gets 307 instead (RFC 9110 §15.4.8: the method and body
are sent again unchanged), with ``Preference-Applied: redirect`` (RFC 7240 §3).
Pure decisions: nothing here awaits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

REDIRECT_PREFERENCE = "redirect"


@dataclass(frozen=True, slots=True, kw_only=True)
class Referral:
    status: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)


def prefers_redirect(prefer_fields: Iterable[str]) -> bool:
    """Whether any ``Prefer`` field line names the ``redirect`` preference (its
    tokens are case-insensitive, RFC 7240 §2; parameters after ``;`` are ignored)."""
    for line in prefer_fields:
        for item in line.split(","):
            token = item.split(";", 1)[0].split("=", 1)[0].strip().lower()
            if token == REDIRECT_PREFERENCE:
                return True
    return False


def refer(message: str, holder_url: str | None, target: str, *, prefer: Iterable[str]) -> Referral:
    """The answer for a write the node does not hold: ``target`` is the request's path
    and query as sent (so that a signature over @path and @query still holds there)."""
    if holder_url is None:  # nobody in the directory holds it
        return Referral(status=400, message=message)
    location = holder_url.rstrip("/") + target
    headers = {"Location": location}
    status = 400
    if prefers_redirect(prefer):
        status = 307
        headers["Preference-Applied"] = REDIRECT_PREFERENCE
    return Referral(
        status=status, message=f"{message}; it is held at {holder_url}", headers=headers
    )
