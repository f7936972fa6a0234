"""The ``idres`` command line: one subcommand per job, errors as exit status 2."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence

from idres import __version__
from schemas.errors import InvalidIdentifier
from schemas.identifiers import parse
from schemas.identifiers.text import MAX_INPUT_CHARS

EXIT_OK = 0
EXIT_INVALID = 2


def _cmd_parse(args: argparse.Namespace) -> int:
    """One JSON object per input line on stdout; a readable pointer on stderr for errors."""
    status = EXIT_OK
    for text in _inputs(args.identifiers):
        # an overlong input is echoed only in part; its error says how long it was
        shown = text if len(text) <= MAX_INPUT_CHARS else text[:80] + "..."
        try:
            out = {"input": shown, **parse(text).as_dict()}
        except InvalidIdentifier as exc:
            status = EXIT_INVALID
            out = {
                "input": shown,
                "error": {
                    "responseCode": exc.response_code,
                    "position": exc.position,
                    "reason": exc.reason,
                    "message": exc.message,
                },
            }
            print(_pointer(exc), file=sys.stderr)
        # ensure_ascii keeps lone surrogates (undecodable argv bytes) printable
        print(json.dumps(out, ensure_ascii=True), flush=True)
    return status


def _inputs(identifiers: list[str]) -> Iterator[str]:
    """The arguments, or with ``-`` one identifier per line of stdin (newline removed)."""
    if identifiers != ["-"]:
        yield from identifiers
        return
    for line in sys.stdin.buffer:
        yield line.removesuffix(b"\n").removesuffix(b"\r").decode("utf-8", "surrogateescape")


def _pointer(exc: InvalidIdentifier) -> str:
    """The message, and for short inputs the input with a caret under the fault."""
    if exc.position is None or len(exc.text) > 120 or not exc.text.isprintable():
        return f"error: {exc.message}"
    return f"error: {exc.message}\n  {exc.text}\n  {' ' * exc.position}^"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="idres", description="Identifier-resolution network: register, resolve, sync."
    )
    parser.add_argument("--version", action="version", version=f"idres {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "parse",
        help="parse identifiers of any scheme",
        description="Print scheme, canonical form and routing key of each identifier, one "
        "JSON object per line; exit 2 if any is invalid. '-' reads one per line from stdin.",
    )
    p.add_argument("identifiers", nargs="+", metavar="IDENTIFIER")
    p.set_defaults(func=_cmd_parse)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    status: int = args.func(args)
    return status
