"""The compiled per-block checker of ``idres verify``: a Rust crate here (src/), which
deploy/setup.sh builds into .venv as the extension module ``idres_native``, and the
reading that feeds it (pages.py). Without the module, verify checks every block in
Python (sync/verify.py), which stays the reference; which one runs is logged once.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger("idres.sync.verify")

TipTuple = tuple[int, bytes, int, bytes]  # height, block hash, last seq, head
# the tip after the block (None: not checked), records found as chained, and the
# operations (seq, payload) whose records the Python path must decide
Outcome = tuple[TipTuple | None, int, list[tuple[int, bytes]]]


class Page(Protocol):
    """Entries of a chain in seq order, with the state of the records they name."""

    count: int
    last_seq: int
    max_height: int

    def add_state(self, last: bytes, records: bytes) -> None: ...


class Checker(Protocol):
    def start(self) -> None: ...
    def feed(self, page: Page) -> None: ...
    def check(
        self,
        chain: str,
        key: bytes,
        tip: TipTuple | None,
        height: int,
        hash: bytes,
        message: bytes,
    ) -> Outcome | None: ...
    def rows(self) -> list[dict[str, Any]]: ...


class Module(Protocol):
    def Page(self, entries: bytes) -> Page: ...
    def Checker(
        self, me: str, pending: set[str], applies: Callable[[str, str, str | None], bool]
    ) -> Checker: ...


_NAME = "idres_native"


@functools.cache  # looked for, and said, once a process
def compiled() -> Module | None:
    """The compiled checker, or None (then verify checks in Python)."""
    try:
        module: Module = importlib.import_module(_NAME)
    except ImportError as exc:
        log.info("verify checks blocks in Python (no compiled checker: %s)", exc)
        return None
    log.info("verify checks blocks with the compiled checker (%s)", _NAME)
    return module
