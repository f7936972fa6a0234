"""What to run where, for a laid-out hierarchy: each node's environment and exact
``idres serve`` command line, and the Kafka operator's ``idres kafka-acl``.

Pure: it renders from a ``Layout`` and the trust anchor; ``idres deploy`` prints it
and writes the environment files the systemd unit reads.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from idres.layout import Layout, PlannedNode
from resolver.topology import Role


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeRun:
    """How one node is started on its machine."""

    node: PlannedNode
    env: tuple[tuple[str, str], ...]  # set in the node's environment
    args: tuple[str, ...]  # after ``idres serve``

    def command(self, idres: str) -> str:
        """One shell line: the environment, then the command."""
        words = [f"{k}={shlex.quote(v)}" for k, v in self.env]
        return " ".join([*words, shlex.quote(idres), "serve", *map(shlex.quote, self.args)])

    def env_file(self) -> str:
        """The systemd ``EnvironmentFile`` (deploy/systemd/idres@.service): the
        environment, and the arguments in ``IDRES_SERVE_ARGS``, which the unit splits
        on spaces (so no argument may hold one)."""
        lines = [f"# idres node {self.node.name}: made by idres deploy"]
        lines += [f"{k}={_env_quote(v)}" for k, v in self.env]
        lines.append(f"IDRES_SERVE_ARGS={' '.join(self.args)}")
        return "\n".join(lines) + "\n"


def _env_quote(value: str) -> str:
    """A value as systemd's EnvironmentFile reads it back unchanged."""
    if value and all(c.isalnum() or c in "-_./:@,=+%" for c in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def node_run(layout: Layout, node: PlannedNode, anchor: str) -> NodeRun:
    env: list[tuple[str, str]] = []
    if node.database_url is not None:
        env.append(("DATABASE_URL", node.database_url))
    if layout.kafka is not None:
        env.append(("KAFKA_BOOTSTRAP", layout.kafka))
        if layout.kafka_passwords is not None:
            env.append(("KAFKA_SASL_USERNAME", node.name))
    args = [
        "--directory",
        layout.directory,
        "--name",
        node.name,
        "--trust-anchor",
        anchor,
        "--data-dir",
        node.data_dir,
        "--host",
        node.listen_host,
        "--port",
        str(node.listen_port),
    ]
    if node.admin_key is not None:
        args += ["--admin-key", node.admin_key]
    if layout.kafka is not None and layout.kafka_passwords is not None:
        args += ["--kafka-password-file", f"{layout.kafka_passwords}/{node.name}.password"]
    return NodeRun(node=node, env=tuple(env), args=tuple(args))


def kafka_acl_command(layout: Layout, anchor: str) -> str | None:
    """The Kafka operator's step: each node's user and ACLs (None without SASL)."""
    if layout.kafka is None or layout.kafka_passwords is None:
        return None
    words = [
        layout.idres,
        "kafka-acl",
        "--directory",
        layout.directory,
        "--trust-anchor",
        anchor,
        "--bootstrap",
        layout.kafka,
        "--passwords",
        layout.kafka_passwords,
    ]
    return " ".join(map(shlex.quote, words))


def render(layout: Layout, anchor: str) -> str:
    """The whole runbook, as ``idres deploy plan`` and ``assemble`` print it."""
    lines = [
        f"trust anchor (the super node's key; every node and client is given it): {anchor}",
        "",
        f"1. copy nodes.json to {layout.directory} on every node's machine (it is public).",
    ]
    acl = kafka_acl_command(layout, anchor)
    step = 2
    if acl is not None:
        lines += [
            "",
            f"{step}. the Kafka operator (KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD of a super "
            "user) makes each node's user and ACLs, and hands NAME.password to each node:",
            f"   {acl}",
        ]
        step += 1
    lines += ["", f"{step}. on each node's machine (its key stays in its data dir: node.pem):"]
    for node in layout.nodes:
        run = node_run(layout, node, anchor)
        below = f" under {node.parent}" if node.parent else ""
        held = ", ".join(node.prefixes) or "no prefixes"
        lines += [
            "",
            f"   # {node.name}: {_role(node.role)}{below}, {held}; reached at {node.url}",
            f"   {run.command(layout.idres)}",
            f"   # or, with deploy/systemd: {node.name}.env as /etc/idres/{node.name}.env, "
            f"then systemctl enable --now idres@{node.name}",
        ]
    return "\n".join(lines)


def _role(role: Role) -> str:
    return {Role.SUPER: "super node", Role.BACKBONE: "backbone node"}.get(role, "sub-chain node")
