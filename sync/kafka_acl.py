"""Kafka principals and ACLs for the nodes of a directory: who may read and write what.

``acls_for`` and ``plan`` are pure (a directory in, a set of ACLs out; the ACLs a
broker has and wants in, what to create and delete out). ``KafkaAdmin`` is the thin
I/O beside them: SCRAM users (AlterUserScramCredentials, KIP-554) and ACLs
(CreateAcls / DescribeAcls / DeleteAcls, KIP-140) over aiokafka's connection, since
aiokafka's admin client has neither.

The rules (each node is the principal ``User:<node name>``):

- its own chain ``idres.chain.<me>``: WRITE, CREATE, DESCRIBE; no other chain is
  writable by it, so a node cannot publish blocks into another node's log;
- the directory topic: READ and WRITE. Kafka ACLs cannot restrict a producer to
  message keys, so any node may append a delegation under any node's key. What stops
  a node from announcing someone else's delegation is the directory itself: every
  delegation carries its issuer's signature, and ``LiveDirectory.adopt`` refuses one
  that does not verify up to the trust anchor;
- the dead-letter topic: WRITE (refused messages are reported there);
- the chains it follows (``sync.follow.followed``: every node below it; a mirror,
  its target and what its target follows): READ, one literal ACL per chain, so a
  sibling's chain stays unreadable. The super node follows every chain and gets READ
  on the prefix ``idres.chain.``. Recompute when the directory changes.

No consumer groups: ``KafkaLog`` assigns partitions itself and keeps its positions
in PostgreSQL, so no GROUP ACL is granted. The idempotent producer needs no
IDEMPOTENT_WRITE on the cluster: WRITE on any topic implies it (KIP-679).
"""

from __future__ import annotations

import base64
import contextlib
import enum
import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from aiokafka.protocol.admin import CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    CompactArray,
    CompactBytes,
    CompactString,
    Int8,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

from resolver.topology import Directory, Role
from sync.judge import followed
from sync.kafka import KafkaCredentials, KafkaLog, client_options
from sync.log import DEAD_LETTER_TOPIC, DIRECTORY_TOPIC, LogUnavailable, chain_topic

CHAIN_PREFIX = chain_topic("")
SCRAM_ITERATIONS = 8192  # Kafka's minimum is 4096


class Operation(enum.IntEnum):
    """Kafka's AclOperation codes (the wire values)."""

    READ = 3
    WRITE = 4
    CREATE = 5
    DESCRIBE = 8


class Pattern(enum.IntEnum):
    """Kafka's PatternType codes."""

    LITERAL = 3
    PREFIXED = 4


_TOPIC = 2  # ResourceType TOPIC
_ANY = 1  # ResourceType / PatternType / AclOperation / AclPermissionType ANY
_ALLOW = 3  # AclPermissionType ALLOW
_SCRAM = {"SCRAM-SHA-256": (1, "sha256"), "SCRAM-SHA-512": (2, "sha512")}


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class Acl:
    """One ALLOW rule on a topic, from any host."""

    principal: str  # User:<name>
    topic: str  # a topic name, or a prefix when ``pattern`` is PREFIXED
    operation: Operation
    pattern: Pattern = Pattern.LITERAL

    def __str__(self) -> str:
        kind = "prefix" if self.pattern is Pattern.PREFIXED else "topic"
        return f"{self.principal} {self.operation.name} {kind} {self.topic}"


def principal(node: str) -> str:
    return f"User:{node}"


def check_names(directory: Directory, admin_user: str | None) -> None:
    """Raise ValueError if a node's principal would be the operator's own: a backbone
    may name a child ``admin``, and provisioning it would set the super user's
    password and take away its ACLs."""
    if admin_user is not None and admin_user in directory.by_name:
        raise ValueError(
            f"node {admin_user!r} in the directory has the Kafka operator's own user name; "
            "refusing to provision it (rename the node, or provision as another super user)"
        )


def acls_for(directory: Directory, node: str, *, mirror_of: str | None = None) -> frozenset[Acl]:
    """Every ACL ``node`` needs in ``directory``, and no more."""
    if node not in directory.by_name:
        raise ValueError(f"node {node!r} is not in the directory")
    who = principal(node)
    own = chain_topic(node)
    rules = {
        Acl(principal=who, topic=own, operation=Operation.WRITE),
        Acl(principal=who, topic=own, operation=Operation.CREATE),
        Acl(principal=who, topic=own, operation=Operation.DESCRIBE),
        Acl(principal=who, topic=DIRECTORY_TOPIC, operation=Operation.READ),
        Acl(principal=who, topic=DIRECTORY_TOPIC, operation=Operation.WRITE),
        Acl(principal=who, topic=DEAD_LETTER_TOPIC, operation=Operation.WRITE),
    }
    if mirror_of is None and directory.by_name[node].role is Role.SUPER:
        rules.add(
            Acl(
                principal=who,
                topic=CHAIN_PREFIX,
                operation=Operation.READ,
                pattern=Pattern.PREFIXED,
            )
        )
    else:
        for chain in followed(directory, node, mirror_of=mirror_of):
            rules.add(Acl(principal=who, topic=chain_topic(chain), operation=Operation.READ))
    return frozenset(rules)


def acls_of(directory: Directory, *, mirrors: Mapping[str, str] | None = None) -> frozenset[Acl]:
    """The ACLs of every node in ``directory``; ``mirrors`` maps a mirror to its target."""
    mirrors = mirrors or {}
    return frozenset(
        acl
        for node in directory.by_name
        for acl in acls_for(directory, node, mirror_of=mirrors.get(node))
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    create: tuple[Acl, ...]
    delete: tuple[Acl, ...]


def plan(have: Iterable[Acl], want: Iterable[Acl], *, principals: Iterable[str]) -> Plan:
    """What to create and delete so that ``principals`` hold exactly ``want``; ACLs of
    any other principal (the operator's own, other applications') are left alone."""
    managed = set(principals)
    have_set = {a for a in have if a.principal in managed}
    want_set = set(want)
    return Plan(
        create=tuple(sorted(want_set - have_set)), delete=tuple(sorted(have_set - want_set))
    )


# AlterUserScramCredentials v0 (API key 51, flexible): not in aiokafka 0.14.


class _AlterScramResponse(Response):  # type: ignore[misc]  # aiokafka is untyped
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "results",
            CompactArray(
                ("user", CompactString("utf-8")),
                ("error_code", Int16),
                ("error_message", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _AlterScramStruct(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = _AlterScramResponse
    SCHEMA = Schema(
        (
            "deletions",
            CompactArray(
                ("name", CompactString("utf-8")), ("mechanism", Int8), ("tags", TaggedFields)
            ),
        ),
        (
            "upsertions",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("mechanism", Int8),
                ("iterations", Int32),
                ("salt", CompactBytes),
                ("salted_password", CompactBytes),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _AlterScram(Request[_AlterScramStruct]):  # type: ignore[misc]
    API_KEY = 51

    def __init__(self, upsertions: list[tuple[str, int, int, bytes, bytes, dict[int, bytes]]]):
        self._upsertions = upsertions

    def build(self, request_struct_class: type[_AlterScramStruct]) -> _AlterScramStruct:
        return request_struct_class([], self._upsertions, {})


def scram_upsertion(
    user: str, password: str, *, mechanism: str = "SCRAM-SHA-512", salt: bytes | None = None
) -> tuple[str, int, int, bytes, bytes, dict[int, bytes]]:
    """The SaltedPassword of RFC 5802 §3 (Hi = PBKDF2 with HMAC), as Kafka stores it."""
    code, digest = _SCRAM[mechanism]
    salt = os.urandom(32) if salt is None else salt
    salted = hashlib.pbkdf2_hmac(digest, password.encode(), salt, SCRAM_ITERATIONS)
    return (user, code, SCRAM_ITERATIONS, salt, salted, {})


def new_password() -> str:
    return base64.urlsafe_b64encode(os.urandom(24)).decode().rstrip("=")


@dataclass(slots=True, kw_only=True)
class KafkaAdmin:
    """The operator's connection (a super user) that provisions nodes."""

    bootstrap: str
    credentials: KafkaCredentials | None
    _client: Any = field(default=None, init=False)

    async def __aenter__(self) -> KafkaAdmin:
        client = AIOKafkaClient(
            bootstrap_servers=self.bootstrap,
            client_id="idres-kafka-acl",
            **client_options(self.credentials),
        )
        try:
            await client.bootstrap()
        except (KafkaError, OSError) as exc:
            with contextlib.suppress(Exception):
                await client.close()
            raise LogUnavailable(
                f"Kafka at {self.bootstrap} is unreachable "
                f"or refused the admin's credentials: {exc}"
            ) from exc
        self._client = client
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await self._client.close()

    async def _send(self, request: Any, what: str) -> Any:
        try:
            return await self._client.send(self._client.get_random_node(), request)
        except (KafkaError, OSError) as exc:
            raise LogUnavailable(f"Kafka at {self.bootstrap}: {what} failed: {exc}") from exc

    async def upsert_user(self, user: str, password: str) -> None:
        mechanism = self.credentials.mechanism if self.credentials else "SCRAM-SHA-512"
        response = await self._send(
            _AlterScram([scram_upsertion(user, password, mechanism=mechanism)]),
            f"setting the SCRAM credential of {user!r}",
        )
        for name, code, message, _tags in response.results:
            if code:
                raise LogUnavailable(
                    f"Kafka refused the SCRAM credential of {name!r}: {message} (error {code})"
                )

    async def acls(self, principals: Iterable[str]) -> set[Acl]:
        found: set[Acl] = set()
        for who in sorted(set(principals)):
            response = await self._send(
                DescribeAclsRequest(_TOPIC, None, _ANY, who, None, _ANY, _ANY),
                f"listing the ACLs of {who}",
            )
            if response.error_code:
                raise LogUnavailable(f"Kafka refused to list ACLs: {response.error_message}")
            for _type, name, pattern, entries in response.resources:
                for entry_principal, _host, operation, permission in entries:
                    if permission != _ALLOW or operation not in Operation._value2member_map_:
                        continue
                    if pattern not in Pattern._value2member_map_:
                        continue
                    found.add(
                        Acl(
                            principal=entry_principal,
                            topic=name,
                            operation=Operation(operation),
                            pattern=Pattern(pattern),
                        )
                    )
        return found

    async def create(self, acls: Iterable[Acl]) -> None:
        for acl in acls:
            response = await self._send(
                CreateAclsRequest(
                    _TOPIC, acl.topic, acl.pattern, acl.principal, "*", acl.operation, _ALLOW
                ),
                f"creating ACL {acl}",
            )
            for code, message in response.creation_responses:
                if code:
                    raise LogUnavailable(f"Kafka refused ACL {acl}: {message} (error {code})")

    async def delete(self, acls: Iterable[Acl]) -> None:
        for acl in acls:
            response = await self._send(
                DeleteAclsRequest(
                    _TOPIC, acl.topic, acl.pattern, acl.principal, "*", acl.operation, _ALLOW
                ),
                f"deleting ACL {acl}",
            )
            for code, message, *_ in response.filter_responses:
                if code:
                    raise LogUnavailable(f"Kafka refused to delete ACL {acl}: {message}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Provisioned:
    created: tuple[Acl, ...]
    deleted: tuple[Acl, ...]
    users: tuple[str, ...]


async def provision(
    bootstrap: str,
    admin: KafkaCredentials | None,
    directory: Directory,
    *,
    passwords: Mapping[str, str],
    mirrors: Mapping[str, str] | None = None,
) -> Provisioned:
    """Make the broker match ``directory``: the shared topics and every chain topic
    exist (created here with the configs ``KafkaLog`` uses, so a parent can follow a
    chain before its node first starts), each node in ``passwords`` has that SCRAM
    password, and each node's principal holds exactly ``acls_of`` its rules."""
    check_names(directory, admin.username if admin is not None else None)
    log = KafkaLog(bootstrap, credentials=admin, client_id="idres-kafka-acl")
    try:
        await log.ensure_topic(DIRECTORY_TOPIC, compacted=True)
        await log.ensure_topic(DEAD_LETTER_TOPIC)
        for node in sorted(directory.by_name):
            await log.ensure_topic(chain_topic(node))
    finally:
        await log.close()
    want = acls_of(directory, mirrors=mirrors)
    principals = {principal(n) for n in directory.by_name}
    async with KafkaAdmin(bootstrap=bootstrap, credentials=admin) as kafka:
        for user, password in sorted(passwords.items()):
            await kafka.upsert_user(user, password)
        todo = plan(await kafka.acls(principals), want, principals=principals)
        await kafka.delete(todo.delete)
        await kafka.create(todo.create)
    return Provisioned(created=todo.create, deleted=todo.delete, users=tuple(sorted(passwords)))
