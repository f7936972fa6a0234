"""Each node's Kafka principal may write only its own chain and read only what it follows.

The rules are checked as a table (``acls_for`` is pure), then against the suite's real
broker, which runs SASL/SCRAM with KRaft's StandardAuthorizer (deploy/kafka/kafka.sh):
each node gets its own SCRAM user and ACLs from ``idres kafka-acl``, and acts through
``KafkaLog`` as a node would.
"""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric import ed25519

from idres.assembly import NodeSpec, delegations
from idres.cli import main
from registry.store import PostgresStore
from resolver.topology import Directory, Role
from sync.follow import Follower
from sync.kafka import KafkaCredentials, KafkaLog
from sync.kafka_acl import Acl, Operation, Pattern, acls_for, acls_of, plan, provision
from sync.log import (
    DEAD_LETTER_TOPIC,
    DIRECTORY_TOPIC,
    LogForbidden,
    LogUnavailable,
    chain_topic,
)
from sync.relay import Relay, RelayConfig
from tests.sync.chains import Node, catch_up, flush, url_record
from tests.sync.conftest import NewPool

# super -> bb -> {sa, sb}; bb2 beside bb with sc below it
LAYOUT = [
    ("super", Role.SUPER, None, ()),
    ("bb", Role.BACKBONE, "super", ("88",)),
    ("sa", Role.SUBCHAIN, "bb", ("88.100",)),
    ("sb", Role.SUBCHAIN, "bb", ("88.200",)),
    ("bb2", Role.BACKBONE, "super", ("86",)),
    ("sc", Role.SUBCHAIN, "bb2", ("86.1",)),
    ("mirror", Role.BACKBONE, "super", ()),
]


def directory_of(
    layout: list[tuple[str, Role, str | None, tuple[str, ...]]],
    keys: dict[str, ed25519.Ed25519PrivateKey] | None = None,
) -> Directory:
    keys = keys if keys is not None else {}
    for n, *_ in layout:
        keys.setdefault(n, ed25519.Ed25519PrivateKey.generate())
    specs = [
        NodeSpec(name=n, role=r, parent=p, url=f"http://127.0.0.1:{9000 + i}", prefixes=pre)
        for i, (n, r, p, pre) in enumerate(layout)
    ]
    signed = delegations(specs, keys)
    return Directory(signed, trust_anchor=signed[0].public_key)


DIRECTORY = directory_of(LAYOUT)


def reads(acls: frozenset[Acl]) -> set[str]:
    return {
        a.topic + ("*" if a.pattern is Pattern.PREFIXED else "")
        for a in acls
        if a.operation is Operation.READ
    }


def writes(acls: frozenset[Acl]) -> set[str]:
    return {a.topic for a in acls if a.operation is Operation.WRITE}


C = chain_topic


@pytest.mark.parametrize(
    ("node", "mirror_of", "readable"),
    [
        ("super", None, {DIRECTORY_TOPIC, "idres.chain.*"}),
        ("bb", None, {DIRECTORY_TOPIC, C("sa"), C("sb")}),
        ("bb2", None, {DIRECTORY_TOPIC, C("sc")}),
        ("sa", None, {DIRECTORY_TOPIC}),
        ("sb", None, {DIRECTORY_TOPIC}),
        ("mirror", "bb", {DIRECTORY_TOPIC, C("bb"), C("sa"), C("sb")}),
    ],
)
def test_a_node_reads_the_directory_and_only_the_chains_it_follows(
    node: str, mirror_of: str | None, readable: set[str]
) -> None:
    assert reads(acls_for(DIRECTORY, node, mirror_of=mirror_of)) == readable


@pytest.mark.parametrize("node", ["super", "bb", "sa", "sb", "bb2", "sc", "mirror"])
def test_a_node_writes_only_its_own_chain_the_directory_and_dead_letters(node: str) -> None:
    acls = acls_for(DIRECTORY, node)
    assert writes(acls) == {C(node), DIRECTORY_TOPIC, DEAD_LETTER_TOPIC}
    created = {a.topic for a in acls if a.operation is Operation.CREATE}
    assert created == {C(node)}
    assert {a.principal for a in acls} == {f"User:{node}"}
    assert all(a.pattern is Pattern.LITERAL for a in acls if a.operation is not Operation.READ)


def test_an_unknown_node_gets_no_acls() -> None:
    with pytest.raises(ValueError, match="not in the directory"):
        acls_for(DIRECTORY, "stranger")


def test_the_plan_makes_the_broker_match_and_leaves_other_principals_alone() -> None:
    mine = Acl(principal="User:sa", topic=C("sa"), operation=Operation.WRITE)
    stale = Acl(principal="User:sa", topic=C("sb"), operation=Operation.READ)
    foreign = Acl(principal="User:billing", topic="invoices", operation=Operation.READ)
    want = Acl(principal="User:sa", topic=DIRECTORY_TOPIC, operation=Operation.READ)
    done = plan([mine, stale, foreign], [mine, want], principals=["User:sa"])
    assert done.create == (want,)
    assert done.delete == (stale,)


def test_a_new_sub_chain_becomes_readable_by_its_parent_only() -> None:
    before = acls_of(DIRECTORY, mirrors={"mirror": "bb"})
    grown = directory_of([*LAYOUT, ("sd", Role.SUBCHAIN, "bb", ("88.300",))])
    after = acls_of(grown, mirrors={"mirror": "bb"})
    gained = {(a.principal, a.operation, a.topic) for a in after - before}
    sd_read = {(p, t) for p, op, t in gained if op is Operation.READ and t == C("sd")}
    # bb follows it, the mirror of bb too; the super node already reads every chain
    assert sd_read == {("User:bb", C("sd")), ("User:mirror", C("sd"))}
    assert {p for p, *_ in gained} == {"User:bb", "User:mirror", "User:sd"}


# Against the real broker


@dataclass
class Net:
    bootstrap: str
    names: dict[str, str]  # short name -> this test's unique node name
    passwords: dict[str, str]
    directory: Directory
    logs: list[KafkaLog]
    keys: dict[str, ed25519.Ed25519PrivateKey]  # by unique name

    def log_of(self, node: str) -> KafkaLog:
        name = self.names[node]
        log = KafkaLog(
            self.bootstrap,
            client_id=f"test-{name}",
            credentials=KafkaCredentials(username=name, password=self.passwords[name]),
            append_timeout=10.0,
        )
        self.logs.append(log)
        return log

    def topic(self, node: str) -> str:
        return chain_topic(self.names[node])


def admin_credentials() -> KafkaCredentials:
    admin = KafkaCredentials.from_env()
    assert admin is not None, "the suite's broker printed no KAFKA_SASL_USERNAME"
    return admin


@pytest_asyncio.fixture
async def net(kafka_bootstrap: str) -> AsyncIterator[Net]:
    run = uuid.uuid4().hex[:6]
    layout = [row for row in LAYOUT if row[0] in ("super", "bb", "sa", "sb")]
    names = {n: f"{n}-{run}" for n, *_ in layout}
    keys: dict[str, ed25519.Ed25519PrivateKey] = {}
    directory = directory_of(
        [(names[n], r, names[p] if p else None, pre) for n, r, p, pre in layout], keys
    )
    passwords = {name: uuid.uuid4().hex for name in names.values()}
    await provision(kafka_bootstrap, admin_credentials(), directory, passwords=passwords)
    net = Net(kafka_bootstrap, names, passwords, directory, [], keys)
    yield net
    for log in net.logs:
        await log.close()


@pytest.mark.kafka
@pytest.mark.asyncio
async def test_a_node_writes_its_own_chain_and_its_parent_reads_it(net: Net) -> None:
    sa, bb = net.log_of("sa"), net.log_of("bb")
    await sa.ensure_topic(net.topic("sa"))
    await sa.append(net.topic("sa"), b"sa", [b"block-1"])
    await bb.ensure_topic(net.topic("sa"))  # exists: no right to create it is needed
    got = await bb.fetch({net.topic("sa"): 0}, wait=10.0)
    assert [r.value for r in got] == [b"block-1"]


@pytest.mark.kafka
@pytest.mark.asyncio
async def test_nodes_replicate_as_their_own_principals_and_a_sibling_cannot_follow(
    net: Net, new_pool: NewPool
) -> None:
    async def node(short: str, *, mirror_of: str | None = None) -> Node:
        name, pool, log = net.names[short], await new_pool(), net.log_of(short)
        return Node(
            name=name,
            pool=pool,
            store=PostgresStore(pool),
            relay=Relay(pool, net.keys[name], RelayConfig(chain=name), log=log),
            follower=Follower(
                pool,
                log,
                me=name,
                directory=lambda: net.directory,
                mirror_of=net.names[mirror_of] if mirror_of else None,
            ),
            key=net.keys[name],
        )

    sa, bb = await node("sa"), await node("bb")
    # sb's operator points its node at sa's chain, as a mirror of sa would read it
    rogue = await node("sb", mirror_of="sa")
    await sa.store.put(url_record("88.100.1/ACL", "https://a.example/acl"), actor="t")
    await flush(sa)
    assert await catch_up(bb) == 1
    got = await bb.store.get("88.100.1/ACL")
    assert got is not None
    assert got.values[0].value == "https://a.example/acl"
    # refused: the follower stalls that chain with the broker's reason, and goes on
    assert await rogue.follower.step(wait=2) == 0
    why, _ = rogue.follower.stalled[net.names["sa"]]
    assert re.search(f"topic '{net.topic('sa')}'.*may not read it", why), why
    assert 'idres_sync_stalled{chain="' + net.names["sa"] + '"} 1' in (
        rogue.follower.metrics_lines()
    )
    assert await rogue.store.get("88.100.1/ACL") is None


@pytest.mark.kafka
@pytest.mark.asyncio
async def test_a_node_cannot_write_another_nodes_chain(net: Net) -> None:
    sa = net.log_of("sa")
    with pytest.raises(LogForbidden, match=f"write topic '{net.topic('sb')}'") as refused:
        await sa.append(net.topic("sb"), b"sb", [b"forged block"])
    assert refused.value.topic == net.topic("sb")
    # nothing arrived: the admin sees sb's chain empty
    admin = KafkaLog(net.bootstrap, credentials=admin_credentials())
    try:
        assert await admin.end_offset(net.topic("sb")) == 0
    finally:
        await admin.close()


@pytest.mark.kafka
@pytest.mark.asyncio
async def test_a_sub_chain_cannot_read_its_siblings_chain(net: Net) -> None:
    sa, sb = net.log_of("sa"), net.log_of("sb")
    await sa.append(net.topic("sa"), b"sa", [b"private to sa and its ancestors"])
    with pytest.raises(LogForbidden, match=f"read topic '{net.topic('sa')}'"):
        await sb.fetch({net.topic("sa"): 0}, wait=2.0)
    with pytest.raises(LogForbidden, match=f"read topic '{net.topic('sa')}'"):
        await sb.end_offset(net.topic("sa"))
    # asked again (a follower retries with backoff), it is refused again, not hung
    with pytest.raises(LogForbidden):
        await sb.fetch({net.topic("sa"): 0}, wait=2.0)


@pytest.mark.kafka
@pytest.mark.asyncio
async def test_a_child_cannot_read_its_parents_chain_nor_create_others_topics(
    net: Net,
) -> None:
    sa = net.log_of("sa")
    with pytest.raises(LogForbidden, match="read topic"):
        await sa.fetch({net.topic("bb"): 0}, wait=2.0)
    stranger = chain_topic(f"nobody-{uuid.uuid4().hex[:6]}")
    with pytest.raises(LogForbidden, match=f"create topic '{stranger}'"):
        await sa.ensure_topic(stranger)


@pytest.mark.kafka
@pytest.mark.asyncio
async def test_the_super_node_reads_every_chain(net: Net) -> None:
    sb, top = net.log_of("sb"), net.log_of("super")
    await sb.append(net.topic("sb"), b"sb", [b"block-1"])
    got = await top.fetch({net.topic("sb"): 0}, wait=10.0)
    assert [r.value for r in got] == [b"block-1"]


@pytest.mark.kafka
@pytest.mark.asyncio
async def test_every_node_reads_and_writes_the_directory(net: Net) -> None:
    sa, sb = net.log_of("sa"), net.log_of("sb")
    await sa.ensure_topic(DIRECTORY_TOPIC, compacted=True)
    await sa.append(DIRECTORY_TOPIC, net.names["sa"].encode(), [b"announcement"])
    end = await sb.end_offset(DIRECTORY_TOPIC)
    got = await sb.fetch({DIRECTORY_TOPIC: end - 1}, wait=10.0)
    assert [r.value for r in got] == [b"announcement"]


@pytest.mark.kafka
@pytest.mark.asyncio
@pytest.mark.parametrize(
    "credentials",
    [None, KafkaCredentials(username="admin", password="not-the-password")],
    ids=["anonymous", "wrong-password"],
)
async def test_a_client_without_valid_credentials_cannot_read_or_write(
    kafka_bootstrap: str, credentials: KafkaCredentials | None
) -> None:
    topic = chain_topic(f"anyone-{uuid.uuid4().hex[:6]}")
    log = KafkaLog(kafka_bootstrap, credentials=credentials, append_timeout=5.0)
    try:
        with pytest.raises(LogUnavailable, match="unreachable"):
            await log.ensure_topic(topic)
        with pytest.raises(LogUnavailable, match="unreachable"):
            await log.append(topic, b"k", [b"anonymous block"])
        with pytest.raises(LogUnavailable, match="unreachable"):
            await log.fetch({DIRECTORY_TOPIC: 0}, wait=1.0)
    finally:
        await log.close()


@pytest.mark.kafka
@pytest.mark.asyncio
async def test_acls_are_recomputed_when_the_directory_changes(
    net: Net, kafka_bootstrap: str
) -> None:
    # the same directory again: nothing to do
    again = await provision(
        kafka_bootstrap, admin_credentials(), net.directory, passwords=net.passwords
    )
    assert (again.created, again.deleted) == ((), ())
    # sb moves out from under bb (re-issued under super): bb may no longer read it
    moved = directory_of(
        [
            (net.names[n], r, net.names[p] if p else None, pre)
            for n, r, p, pre in [
                ("super", Role.SUPER, None, ()),
                ("bb", Role.BACKBONE, "super", ("88",)),
                ("sa", Role.SUBCHAIN, "bb", ("88.100",)),
                ("sb", Role.BACKBONE, "super", ("86",)),
            ]
        ]
    )
    changed = await provision(kafka_bootstrap, admin_credentials(), moved, passwords={})
    revoked = Acl(
        principal=f"User:{net.names['bb']}", topic=net.topic("sb"), operation=Operation.READ
    )
    assert revoked in changed.deleted
    sb, bb = net.log_of("sb"), net.log_of("bb")
    await sb.append(net.topic("sb"), b"sb", [b"after the move"])
    with pytest.raises(LogForbidden, match="read topic"):
        await bb.fetch({net.topic("sb"): 0}, wait=2.0)


@pytest.mark.kafka
def test_idres_kafka_acl_makes_users_and_acls_from_a_directory_file(
    kafka_bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = uuid.uuid4().hex[:6]
    directory = directory_of(
        [
            (f"super-{run}", Role.SUPER, None, ()),
            (f"sub-{run}", Role.SUBCHAIN, f"super-{run}", ("88.7",)),
        ]
    )
    nodes = tmp_path / "nodes.json"
    nodes.write_text(json.dumps([d.to_json() for d in directory.by_name.values()]))
    anchor = base64.b64encode(directory.trust_anchor).decode()
    common = ["kafka-acl", "--directory", str(nodes), "--trust-anchor", anchor]
    users = tmp_path / "users"
    status = main([*common, "--bootstrap", kafka_bootstrap, "--passwords", str(users)])
    assert status == 0
    out = capsys.readouterr().out
    assert f"+ User:sub-{run} WRITE topic idres.chain.sub-{run}" in out
    assert f"+ User:super-{run} READ prefix idres.chain." in out
    secret = users / f"sub-{run}.password"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert main([*common, "--dry-run"]) == 0
    assert f"User:sub-{run} READ topic idres.directory" in capsys.readouterr().out
    assert os.environ.get("KAFKA_SASL_USERNAME")  # it ran as the suite's admin


def test_a_node_named_as_the_kafka_operator_is_not_provisioned(
    kafka_bootstrap: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A backbone may name a child after the operator's super user; provisioning it
    would reset that user's password and take away its ACLs."""
    admin = admin_credentials()
    top = f"super-{uuid.uuid4().hex[:6]}"
    directory = directory_of(
        [(top, Role.SUPER, None, ()), (admin.username, Role.BACKBONE, top, ("88.8",))]
    )
    nodes = tmp_path / "nodes.json"
    nodes.write_text(json.dumps([d.to_json() for d in directory.by_name.values()]))
    anchor = base64.b64encode(directory.trust_anchor).decode()
    users = tmp_path / "users"
    status = main(
        [
            *("kafka-acl", "--directory", str(nodes), "--trust-anchor", anchor),
            *("--bootstrap", kafka_bootstrap, "--passwords", str(users)),
        ]
    )
    assert status == 2
    assert "has the Kafka operator's own user name" in capsys.readouterr().err
    assert not users.exists()  # no password made for it
