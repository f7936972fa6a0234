"""schemathesis hooks for tests/security/test_schemathesis.py (SCHEMATHESIS_HOOKS).

The identifier's pattern in /openapi.json is each scheme's syntax; what no regex
states (``schemas.identifiers.pattern.NOT_IN_PATTERN``) is the parser's alone, and a
server that refuses it with 400 is right. So a positive case whose identifier the
parser refuses for one of those reasons is not sent as "valid data"; one refused for
any other reason is, and then fails the run: the pattern said more than the parser.
"""

from __future__ import annotations

from urllib.parse import unquote

import schemathesis
from schemathesis import Case, GenerationMode, HookContext

from schemas.errors import InvalidIdentifier
from schemas.identifiers import parse
from schemas.identifiers.pattern import NOT_IN_PATTERN_REASONS


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
    return not (isinstance(identifier, str) and unstated_refusal(unquote(identifier)))
