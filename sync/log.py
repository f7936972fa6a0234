"""The log between nodes, as the rest of sync sees it: topics of ordered messages.

Two implementations stand behind this Protocol: Apache Kafka (``sync.kafka``) for
nodes on several machines, and an in-process twin (``sync.memory``) for a whole
network in one process (``idres up``). Both pass the same contract tests.

Topic layout (schemas/TOPICS.md): one single-partition topic per chain,
``idres.chain.<node>``, keyed by the chain's name, so a chain's blocks (and with them
every identifier's operations) stay in order; ``idres.directory``, compacted, keyed
by node name; ``idres.dead-letters`` for messages a node refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from schemas.errors import ServerError

DIRECTORY_TOPIC = "idres.directory"
DEAD_LETTER_TOPIC = "idres.dead-letters"


def chain_topic(chain: str) -> str:
    return f"idres.chain.{chain}"


class LogUnavailable(ServerError):
    """The log cannot be reached or refused a write; the caller retries later."""

    response_code = 1
    http_status = 503


class LogForbidden(LogUnavailable):
    """The log authenticated this node but its ACLs refuse it this topic (or refused
    its credentials). A kind of ``LogUnavailable`` so that every loop that retries
    the log backs off on it too: rights may be granted later (``idres kafka-acl``),
    and a node without them must wait, not spin."""

    def __init__(self, message: str, *, topic: str | None = None) -> None:
        super().__init__(message)
        self.topic = topic


@dataclass(frozen=True, slots=True, kw_only=True)
class LogRecord:
    topic: str
    offset: int
    key: bytes
    value: bytes


class Log(Protocol):
    async def ensure_topic(self, topic: str, *, compacted: bool = False) -> None:
        """Create ``topic`` (one partition, kept forever or compacted) if it is missing."""
        ...

    async def append(self, topic: str, key: bytes, values: Sequence[bytes]) -> None:
        """Append ``values`` in order; return once the log has acknowledged all of them."""
        ...

    async def fetch(
        self, positions: Mapping[str, int], *, wait: float, max_records: int = 500
    ) -> list[LogRecord]:
        """Records at or after each topic's offset, waiting up to ``wait`` seconds for any."""
        ...

    async def end_offset(self, topic: str) -> int:
        """The offset the next record appended to ``topic`` will get."""
        ...

    def reader(self) -> Log:
        """A log on the same servers for another reader: each reader's ``fetch``
        keeps its own positions, so two loops reading different topics never wait on
        each other. Appends may go through either."""
        ...

    async def close(self) -> None: ...
