"""schemathesis hooks for tests/security/test_schemathesis.py (SCHEMATHESIS_HOOKS).

The identifier's pattern in /openapi.json is each scheme's syntax; what no regex
states (``schemas.identifiers.pattern.NOT_IN_PATTERN``) is the parser's alone, and a
server that refuses it with 400 is right. So a positive case whose identifier the
parser refuses for one of those reasons is not sent as "valid data"; one refused for
any other reason is, and then fails the run: the pattern said more than the parser.

Likewise a write (PUT, DELETE) of an identifier outside the node's prefixes
(IDRES_SCHEMATHESIS_PREFIXES) is answered 400/301 with Location before any signature
is read (Handle semantics, documented on the 400): which prefixes a node holds is its
state, not its description's, so such a write is not sent as "valid data" either.
"""

from __future__ import annotations

import os
from urllib.parse import unquote

import schemathesis
from schemathesis import Case, GenerationMode, HookContext

from registry.authz import served
from resolver.topology import prefix_key
from schemas.errors import InvalidIdentifier
from schemas.identifiers import parse
from schemas.identifiers.pattern import NOT_IN_PATTERN_REASONS

HELD = tuple(
    prefix_key(p) for p in os.environ.get("IDRES_SCHEMATHESIS_PREFIXES", "").split(",") if p
)
WRITES = frozenset({"PUT", "DELETE"})


def unstated_refusal(identifier: str) -> bool:
    """Whether the parser refuses ``identifier`` for a rule the pattern cannot state."""
    try:
        parse(identifier)
    except InvalidIdentifier as exc:
        return any(words in exc.reason for words in NOT_IN_PATTERN_REASONS)
    return False


@schemathesis.hook
def filter_case(context: HookContext, case: Case) -> bool:
    if case.meta is None or case.meta.generation.mode is not GenerationMode.POSITIVE:
        return True
    identifier = (case.path_parameters or {}).get("identifier")  # as sent: percent-encoded
    if not isinstance(identifier, str):
        return True
    text = unquote(identifier)
    if unstated_refusal(text):
        return False
    return case.method.upper() not in WRITES or held(text)


def held(identifier: str) -> bool:
    """Whether the node under test holds ``identifier`` (a malformed one: let it pass,
    the server's 400 for it is the description's to state)."""
    try:
        return served(parse(identifier), HELD)
    except InvalidIdentifier:
        return True
