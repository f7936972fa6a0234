"""Node configuration, read once from the environment and the command line.

Every setting has a named default; ``NodeConfig`` is frozen so no part of the node
can change what another part was told.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from resolver.api import DEFAULT_DIGITAL_LINK_HOST
from resolver.budget import MAX_UPSTREAM_PER_BATCH, UPSTREAM_BUDGET
from resolver.dns.names import DEFAULT_ZONE

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_DATA_DIR = Path("~/.local/share/idres")
DEFAULT_PREFIXES = (
    "88",
    "86",
    "10",
    "gs1:0",
    "gs1:6",
    "gs1:9",
    "oid:1.2.156",
    "oid:2.16.156",
    "ecode:1",
    "ecode:2",
)
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_SIGNATURE_MAX_AGE = 300
DEFAULT_WORKERS = 1
DEFAULT_KAFKA_MECHANISM = "SCRAM-SHA-512"
DEFAULT_CLIENT_UPSTREAM_RATE = UPSTREAM_BUDGET.rate
DEFAULT_BATCH_UPSTREAM_MAX = MAX_UPSTREAM_PER_BATCH
# idres up's DNS port on each node's own loopback address: 53, which a resolver that
# follows delegations (they carry no port) needs, when the process may bind it
UP_DNS_PORT_USER = 10053
UP_DNS_PORT = 53 if getattr(os, "geteuid", lambda: 1)() == 0 else UP_DNS_PORT_USER
# the Handle protocol's port (RFC 3652 §2.1: 2641, TCP and UDP), as idres up uses it
HANDLE_PORT = 2641
UP_HANDLE_PORT_USER = 12641
UP_HANDLE_PORT = HANDLE_PORT if getattr(os, "geteuid", lambda: 1)() == 0 else UP_HANDLE_PORT_USER


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    database_url: str | None = None  # None: an embedded PostgreSQL under data_dir
    data_dir: Path = DEFAULT_DATA_DIR
    prefixes: tuple[str, ...] = field(default=DEFAULT_PREFIXES)
    admin_key: Path | None = None  # PEM private or public key; None: data_dir/admin.pem
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    signature_max_age: int = DEFAULT_SIGNATURE_MAX_AGE
    workers: int = DEFAULT_WORKERS  # processes accepting on one socket
    # what accepts on the node's port: "edge" (resolver/edge, compiled; the workers
    # behind it on a socket of the node's own) or "python" (the workers' front doors)
    front: str = "edge"
    # In a hierarchy: this node's name in a directory file of signed delegations, and
    # the super node's key (base64 DER) that the directory must verify against.
    name: str | None = None
    directory: Path | None = None
    trust_anchor: str | None = None
    cache: bool = True  # False: every lookup goes upstream (the cold-path benchmark)
    kafka: str | None = None  # host:port of a Kafka broker: publish and follow chains there
    # This node's Kafka principal (SASL); None: PLAINTEXT. The operator makes the user
    # and its ACLs with `idres kafka-acl`.
    kafka_user: str | None = None
    kafka_password: str = field(default="", repr=False)
    kafka_mechanism: str = DEFAULT_KAFKA_MECHANISM
    hash_alg: str = "sha256"  # of this node's chain: sha256 or sm3
    verify_every: float = 30.0  # seconds between two continuous checks (sync/audit.py); 0: off
    mirror_of: str | None = None  # keep and answer copies of what this node keeps
    snapshot: Path | None = None  # start the chains this node keeps from this file
    # what one anonymous client may make this node ask other nodes (POST /api/resolve)
    client_upstream_rate: float = DEFAULT_CLIENT_UPSTREAM_RATE  # lookups a second
    batch_upstream_max: int = DEFAULT_BATCH_UPSTREAM_MAX  # lookups one request may start
    # the host Digital Link paths are read under (never the request's Host header)
    digital_link_host: str = DEFAULT_DIGITAL_LINK_HOST
    # the DNS face (resolver/dns): off unless a port is given; on ``host`` unless
    # ``dns_host``; names under ``dns_zone``, which every node of a network shares
    dns_port: int | None = None
    dns_host: str | None = None
    dns_zone: str = DEFAULT_ZONE
    # secondaries (host, port) told of each new block by NOTIFY; addresses that may
    # transfer the zones besides loopback and those secondaries
    dns_notify: tuple[tuple[str, int], ...] = ()
    dns_transfer_to: tuple[str, ...] = ()
    # the Handle protocol face (resolver/handle): off unless a port is given; on
    # ``host`` unless ``handle_host``
    handle_port: int | None = None
    handle_host: str | None = None
    # Handle.Net's HS_SECKEY secrets (Authorization: Basic) on REST writes: off unless
    # the operator turns it on, and then over TLS or from loopback only
    allow_seckey: bool = False
    # the network's name (host[:port]) that every node accepts in a signature's
    # @authority beside its own, so that a write may be redirected to the node holding
    # it (README, Registering identifiers); None: only the node's own names
    network: str | None = None
    # HTTPS on the node's port: a PEM certificate chain and its key (both or neither)
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> NodeConfig:
        env = os.environ if env is None else env
        prefixes = tuple(p for p in env.get("IDRES_PREFIXES", "").split(",") if p)
        admin = env.get("IDRES_ADMIN_KEY")
        return cls(
            host=env.get("IDRES_HOST", DEFAULT_HOST),
            port=int(env.get("IDRES_PORT", DEFAULT_PORT)),
            database_url=env.get("DATABASE_URL") or None,
            data_dir=Path(env.get("IDRES_DATA_DIR", str(DEFAULT_DATA_DIR))),
            prefixes=prefixes or DEFAULT_PREFIXES,
            admin_key=Path(admin) if admin else None,
            max_body_bytes=int(env.get("IDRES_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)),
            signature_max_age=int(env.get("IDRES_SIGNATURE_MAX_AGE", DEFAULT_SIGNATURE_MAX_AGE)),
            kafka=env.get("KAFKA_BOOTSTRAP") or None,
            kafka_user=env.get("KAFKA_SASL_USERNAME") or None,
            kafka_password=env.get("KAFKA_SASL_PASSWORD", ""),
            kafka_mechanism=env.get("KAFKA_SASL_MECHANISM") or DEFAULT_KAFKA_MECHANISM,
            hash_alg=env.get("IDRES_HASH", "sha256"),
            client_upstream_rate=float(
                env.get("IDRES_CLIENT_UPSTREAM_RATE", DEFAULT_CLIENT_UPSTREAM_RATE)
            ),
            batch_upstream_max=int(env.get("IDRES_BATCH_UPSTREAM_MAX", DEFAULT_BATCH_UPSTREAM_MAX)),
            digital_link_host=env.get("IDRES_DIGITAL_LINK_HOST", DEFAULT_DIGITAL_LINK_HOST),
            mirror_of=env.get("IDRES_MIRROR_OF") or None,
            front=env.get("IDRES_FRONT", "edge"),
            snapshot=Path(env["IDRES_SNAPSHOT"]) if env.get("IDRES_SNAPSHOT") else None,
            dns_port=int(env["IDRES_DNS_PORT"]) if env.get("IDRES_DNS_PORT") else None,
            dns_host=env.get("IDRES_DNS_HOST") or None,
            dns_zone=env.get("IDRES_DNS_ZONE") or DEFAULT_ZONE,
            dns_notify=tuple(host_port(t) for t in env.get("IDRES_DNS_NOTIFY", "").split(",") if t),
            dns_transfer_to=tuple(
                t for t in env.get("IDRES_DNS_ALLOW_TRANSFER", "").split(",") if t
            ),
            handle_port=int(env["IDRES_HANDLE_PORT"]) if env.get("IDRES_HANDLE_PORT") else None,
            handle_host=env.get("IDRES_HANDLE_HOST") or None,
            allow_seckey=env.get("IDRES_ALLOW_SECKEY", "").lower() in ("1", "true", "yes"),
            network=env.get("IDRES_NETWORK") or None,
            tls_cert=Path(env["IDRES_TLS_CERT"]) if env.get("IDRES_TLS_CERT") else None,
            tls_key=Path(env["IDRES_TLS_KEY"]) if env.get("IDRES_TLS_KEY") else None,
        )


def host_port(text: str) -> tuple[str, int]:
    """``ADDRESS:PORT`` (``[v6]:PORT``): an IP address, as a secondary's ACL names it;
    ValueError for anything else."""
    host, _, port = text.strip().rpartition(":")
    host = host.strip("[]")
    ipaddress.ip_address(host)  # ValueError: not an address
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"no port in {text!r}")
    return host, int(port)
