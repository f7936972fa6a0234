"""The ``idres`` command line: one subcommand per job, errors as exit status 2.

Registrant commands sign their requests with ``--key`` (a PEM private key from
``idres keygen``) as ``--key-id`` (``index:handle`` of its HS_PUBKEY); both may come
from IDRES_KEY and IDRES_KEY_ID, the server from IDRES_SERVER.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import ipaddress
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from idres import __version__
from idres.config import (
    HANDLE_PORT,
    UP_DNS_PORT,
    UP_DNS_PORT_USER,
    UP_HANDLE_PORT,
    UP_HANDLE_PORT_USER,
    NodeConfig,
    host_port,
)
from idres.keyfiles import write_secret
from registry import httpsig
from registry.client import RegistryClient, Reply
from resolver.dns.names import DEFAULT_ZONE
from schemas.codec_json import value_to_json
from schemas.errors import IdresError, InvalidIdentifier
from schemas.identifiers import bid_address, parse
from schemas.identifiers.text import MAX_INPUT_CHARS

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
DEFAULT_SERVER = "http://127.0.0.1:8000"


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
        text = line.removesuffix(b"\n").removesuffix(b"\r")  # LF or CRLF files
        if text:  # a blank line (a file's last newline, a separator) is no identifier
            yield text.decode("utf-8", "surrogateescape")


def _pointer(exc: InvalidIdentifier) -> str:
    """The message, and for short inputs the input with a caret under the fault."""
    if exc.position is None or len(exc.text) > 120 or not exc.text.isprintable():
        return f"error: {exc.message}"
    return f"error: {exc.message}\n  {exc.text}\n  {' ' * exc.position}^"


def _cmd_keygen(args: argparse.Namespace) -> int:
    path = Path(args.out)
    if path.exists() and not args.force:
        print(f"error: {path} exists; use --force to overwrite it", file=sys.stderr)
        return EXIT_INVALID
    if args.did is not None and args.alg != "ed25519":
        print("error: --did needs --alg ed25519 (a did:bid 'e' address)", file=sys.stderr)
        return EXIT_INVALID
    if args.did and (
        len(args.did) != 4
        or not args.did.isascii()
        or not args.did.isalnum()
        or args.did != args.did.lower()
    ):
        print(
            f"error: --did {args.did!r}: a sub-chain code is 4 lowercase letters or digits",
            file=sys.stderr,
        )
        return EXIT_INVALID
    key = httpsig.generate_key(args.alg)
    write_secret(path, httpsig.private_key_pem(key), replace=args.force)
    der = httpsig.public_key_der(key)
    out = {"key": str(path), "alg": args.alg, "publicKey": base64.b64encode(der).decode()}
    if args.did is not None:
        raw = bid_address.raw_ed25519(der)
        assert raw is not None  # an Ed25519 key, checked above
        out["did"] = bid_address.address(raw, args.did or None)
        out["publicKeyHex"] = bid_address.public_key_hex(raw)
    print(json.dumps(out))
    return EXIT_OK


def _cmd_serve(args: argparse.Namespace) -> int:
    from idres.node import run

    config = NodeConfig.from_env()
    overrides: dict[str, Any] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    if args.prefix:
        overrides["prefixes"] = tuple(args.prefix)
    if args.admin_key:
        overrides["admin_key"] = Path(args.admin_key)
    if args.data_dir:
        overrides["data_dir"] = Path(args.data_dir)
    if args.workers is not None:
        overrides["workers"] = args.workers
    if args.directory:
        overrides.update(
            directory=Path(args.directory), name=args.name, trust_anchor=args.trust_anchor
        )
    if args.no_cache:
        overrides["cache"] = False
    if args.front:
        overrides["front"] = args.front
    if args.client_upstream_rate is not None:
        overrides["client_upstream_rate"] = args.client_upstream_rate
    if args.batch_upstream_max is not None:
        overrides["batch_upstream_max"] = args.batch_upstream_max
    if args.digital_link_host:
        overrides["digital_link_host"] = args.digital_link_host
    if args.dns_port is not None:
        overrides["dns_port"] = args.dns_port
    if args.dns_host:
        overrides["dns_host"] = args.dns_host
    if args.dns_zone:
        overrides["dns_zone"] = args.dns_zone
    if args.dns_notify:
        overrides["dns_notify"] = tuple(
            _host_port(item, "--dns-notify") for item in args.dns_notify
        )
    if args.dns_allow_transfer:
        for address in args.dns_allow_transfer:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise _Usage(f"--dns-allow-transfer {address!r}: an IP address") from None
        overrides["dns_transfer_to"] = tuple(args.dns_allow_transfer)
    if args.handle_port is not None:
        overrides["handle_port"] = args.handle_port
    if args.handle_host:
        overrides["handle_host"] = args.handle_host
    if args.kafka:
        overrides["kafka"] = args.kafka
    if args.kafka_user:
        overrides["kafka_user"] = args.kafka_user
    if args.kafka_password_file:
        overrides["kafka_password"] = _password_file(args.kafka_password_file)
    if args.kafka_mechanism:
        overrides["kafka_mechanism"] = args.kafka_mechanism
    if args.hash:
        overrides["hash_alg"] = args.hash
    if args.mirror_of:
        overrides["mirror_of"] = args.mirror_of
    if args.snapshot:
        overrides["snapshot"] = Path(args.snapshot)
    if args.verify_every is not None:
        overrides["verify_every"] = args.verify_every
    if args.allow_seckey:
        overrides["allow_seckey"] = True
    if args.network:
        overrides["network"] = args.network
    if args.tls_cert:
        overrides["tls_cert"] = Path(args.tls_cert)
    if args.tls_key:
        overrides["tls_key"] = Path(args.tls_key)
    return run(dataclasses.replace(config, **overrides))


def _cmd_up(args: argparse.Namespace) -> int:
    import uvloop

    from idres.network import prepare, up

    data_dir = Path(args.data_dir or NodeConfig.from_env().data_dir)
    prepared = prepare(
        data_dir,
        host=args.host,
        base_port=args.base_port,
        dns_port=args.dns_port,
        handle_port=args.handle_port,
    )
    kafka = args.kafka if args.kafka is not None else os.environ.get("KAFKA_BOOTSTRAP") or None
    uvloop.run(up(prepared, data_dir, kafka=kafka))
    return EXIT_OK


def _host_port(text: str, flag: str) -> tuple[str, int]:
    try:
        return host_port(text)
    except ValueError:
        raise _Usage(f"{flag} {text!r}: write ADDRESS:PORT, e.g. 127.0.0.1:53") from None


def _password_file(path: str) -> str:
    """A secret from a file (first line), so that it never shows in ``ps``."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise _Usage(f"cannot read {path}: {exc.strerror}") from None
    return lines[0].strip() if lines else ""


def _node_passwords(folder: Path, names: Sequence[str]) -> dict[str, str]:
    """Each node's Kafka password from ``folder/NAME.password``, made (random, mode
    600) for a node that has none yet; the operator hands each file to its node."""
    from sync.kafka_acl import new_password

    found = {}
    for name in names:
        path = folder / f"{name}.password"
        if not path.exists():
            write_secret(path, (new_password() + "\n").encode())
        found[name] = _password_file(str(path))
    return found


def _cmd_kafka_acl(args: argparse.Namespace) -> int:
    from resolver.topology import Delegation, Directory
    from sync.kafka import KafkaCredentials
    from sync.kafka_acl import acls_of, check_names, provision

    try:
        entries = json.loads(Path(args.directory).read_text())
        directory = Directory(
            [Delegation.from_json(e) for e in entries],
            trust_anchor=base64.b64decode(args.trust_anchor, validate=True),
        )
    except (OSError, ValueError) as exc:
        raise _Usage(f"--directory {args.directory}: {exc}") from None
    mirrors: dict[str, str] = {}
    for item in args.mirror or ():
        name, sep, of = item.partition("=")
        if not sep or name not in directory.by_name or of not in directory.by_name:
            raise _Usage(f"--mirror {item!r}: write NAME=NODE, both in the directory")
        mirrors[name] = of
    if args.dry_run:
        for acl in sorted(acls_of(directory, mirrors=mirrors)):
            print(acl)
        return EXIT_OK
    bootstrap = args.bootstrap or os.environ.get("KAFKA_BOOTSTRAP")
    if not bootstrap:
        raise _Usage("give --bootstrap HOST:PORT (or KAFKA_BOOTSTRAP)")
    try:
        admin = KafkaCredentials.from_env()
        if args.admin_user:
            password = os.environ.get("KAFKA_SASL_PASSWORD", "")
            if args.admin_password_file:
                password = _password_file(args.admin_password_file)
            admin = KafkaCredentials(username=args.admin_user, password=password)
    except ValueError as exc:
        raise _Usage(str(exc)) from None
    try:
        check_names(directory, admin.username if admin is not None else None)
    except ValueError as exc:
        raise _Usage(str(exc)) from None
    passwords = _node_passwords(Path(args.passwords), sorted(directory.by_name))
    done = asyncio.run(provision(bootstrap, admin, directory, passwords=passwords, mirrors=mirrors))
    for acl in done.deleted:
        print(f"- {acl}")
    for acl in done.created:
        print(f"+ {acl}")
    print(
        f"idres kafka-acl: {len(done.users)} SCRAM users (passwords in {args.passwords}), "
        f"{len(done.created)} ACLs created, {len(done.deleted)} deleted",
        file=sys.stderr,
    )
    return EXIT_OK


async def _resolve(args: argparse.Namespace) -> int:
    from resolver.client import Client

    server = args.server or os.environ.get("IDRES_SERVER", DEFAULT_SERVER)
    status = EXIT_OK
    async with Client(server) as client:
        for text in _inputs(args.identifiers):
            try:
                found = await client.resolve(text, recursive=not args.no_recursive, auth=args.auth)
            except InvalidIdentifier as exc:
                status = EXIT_INVALID
                print(
                    json.dumps(
                        {
                            "input": text,
                            "error": {"responseCode": exc.response_code, "message": exc.message},
                        }
                    )
                )
                continue
            except IdresError as exc:
                status = max(status, EXIT_FAILED)
                print(
                    json.dumps(
                        {
                            "input": text,
                            "error": {"responseCode": exc.response_code, "message": exc.message},
                        }
                    )
                )
                continue
            out: dict[str, Any] = {
                "input": text,
                "handle": found.handle,
                "values": [value_to_json(v) for v in found.values],
            }
            if found.stale:
                out["stale"] = True
            if found.qualifiers:
                out["qualifiers"] = dict(found.qualifiers)
            print(json.dumps(out, ensure_ascii=False))
    return status


def _client(args: argparse.Namespace, *, need_key: bool = True) -> RegistryClient:
    key_path = args.key or os.environ.get("IDRES_KEY")
    key_id = args.key_id or os.environ.get("IDRES_KEY_ID")
    server = args.server or os.environ.get("IDRES_SERVER", DEFAULT_SERVER)
    if need_key and (not key_path or not key_id):
        raise _Usage(
            "this command signs its request: give --key FILE and --key-id INDEX:HANDLE "
            "(or IDRES_KEY and IDRES_KEY_ID)"
        )
    key = None
    if key_path:
        try:
            key = httpsig.load_private_key(Path(key_path).read_bytes())
        except OSError as exc:
            raise _Usage(f"cannot read key {key_path}: {exc.strerror}") from None
        except ValueError as exc:
            raise _Usage(f"{key_path}: {exc}") from None
    return RegistryClient(server, key=key, key_id=key_id)


class _Usage(Exception):
    """A mistake in how the command was called."""


def _print_reply(reply: Reply) -> int:
    print(json.dumps(reply.body, ensure_ascii=False))
    if not reply.ok:
        print(f"error: HTTP {reply.status}: {reply.body.get('message', '')}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _values_from_args(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.values_file:
        try:
            loaded = json.loads(Path(args.values_file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise _Usage(f"cannot read values from {args.values_file}: {exc}") from None
        values = loaded.get("values", loaded) if isinstance(loaded, dict) else loaded
        if not isinstance(values, list):
            raise _Usage(f'{args.values_file}: expected a list of values or {{"values": ...}}')
        return values
    pairs: list[tuple[str, str]] = [("URL", u) for u in args.url or []]
    for item in args.value or []:
        type_, sep, text = item.partition("=")
        if not sep:
            raise _Usage(f"--value {item!r}: write TYPE=TEXT, e.g. --value EMAIL=ops@example.com")
        pairs.append((type_, text))
    if not pairs:
        raise _Usage("give the record's values: --url URL, --value TYPE=TEXT or --values-file F")
    return [
        {"index": i, "type": t, "data": {"format": "string", "value": v}}
        for i, (t, v) in enumerate(pairs, start=1)
    ]


async def _register(args: argparse.Namespace) -> int:
    values = _values_from_args(args)
    async with _client(args) as client:
        return _print_reply(
            await client.put(
                args.handle,
                values,
                overwrite=not args.create_only,
                idempotency_key=os.urandom(16).hex(),
            )
        )


async def _delete(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        return _print_reply(await client.delete(args.handle, idempotency_key=os.urandom(16).hex()))


async def _history(args: argparse.Namespace) -> int:
    async with _client(args, need_key=False) as client:
        return _print_reply(await client.history(args.handle))


async def _get(args: argparse.Namespace) -> int:
    async with _client(args, need_key=False) as client:
        return _print_reply(await client.get(args.handle))


def _verify_proof(args: argparse.Namespace) -> int:
    from sync import proof

    try:
        answer = json.loads(Path(args.proof).read_text())
    except ValueError as exc:
        print(f"idres verify: {args.proof} is not JSON: {exc}", file=sys.stderr)
        return EXIT_INVALID
    anchor = None
    if args.trust_anchor:
        try:
            anchor = base64.b64decode(args.trust_anchor, validate=True)
        except ValueError:
            print("idres verify: --trust-anchor is not base64", file=sys.stderr)
            return EXIT_INVALID
    if not isinstance(answer, dict) or "proof" not in answer:
        print(f"idres verify: {args.proof} holds no proof (ask with ?proof=true)", file=sys.stderr)
        return EXIT_INVALID
    checked = proof.check(answer, anchor, partial=args.partial)
    for claim in checked.claims:
        print(f"  ok: {claim}")
    for problem in checked.problems:
        print(f"  PROBLEM: {problem}")
    print("  proof holds" if not checked.problems else "  the proof does not hold")
    return EXIT_OK if not checked.problems else EXIT_FAILED


async def _verify(args: argparse.Namespace) -> int:
    import aiohttp

    from idres.verify_client import Shown, fetch_report

    if args.proof:
        if args.node:
            raise _Usage(f"--proof checks a file offline: give no node ({args.node})")
        return _verify_proof(args)

    url = _verify_node(args) + "/api/sync/verify"
    try:
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=args.timeout)
        ) as session:
            status, report = await fetch_report(session, url, progress=Shown())
            if report is None:
                print(f"idres verify: {url} answered HTTP {status}", file=sys.stderr)
                return EXIT_FAILED
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        print(f"idres verify: cannot ask {url}: {exc or type(exc).__name__}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        chains = ", ".join(f"{c} ({n} blocks)" for c, n in report["chains"].items())
        print(f"node {report['node']}: chains {chains}")
        print(
            f"  {report['records']} records match their last operation; "
            f"{report['anchors']} child blocks anchored; {report['pending']} operations "
            "not yet in a block"
        )
        for problem in report["problems"]:
            print(f"  PROBLEM: {problem}")
        if report.get("repaired"):  # rewritten from the chain by the node (sync/repair.py)
            print(f"  repaired from the chain: {', '.join(report['repaired'])}")
        for lost in report.get("withheld", []):
            print(f"  WITHHELD: {lost['handle']} value {lost['index']} (restore it from a backup)")
        print("  OK" if report["ok"] else f"  {len(report['problems'])} problem(s)")
    return EXIT_OK if report["ok"] else EXIT_FAILED


def _verify_node(args: argparse.Namespace) -> str:
    """The node to check: the argument (what people type) or --server, not both."""
    given = [n.rstrip("/") for n in (args.node, args.server) if n]
    if len(set(given)) > 1:
        raise _Usage(f"two nodes given, {args.node} and --server {args.server}: give one")
    node = given[0] if given else DEFAULT_SERVER
    if not node.startswith(("http://", "https://")):
        raise _Usage(f"{node}: give the node's URL, e.g. {DEFAULT_SERVER}")
    return node


async def _snapshot(args: argparse.Namespace) -> int:
    import aiohttp

    url = args.server.rstrip("/") + "/api/sync/snapshot"
    out = Path(args.out)
    part = out.with_name(out.name + ".part")
    size = 0
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=args.timeout)) as session,
            session.get(url) as response,
        ):
            if response.status != 200:
                body = await response.text()
                print(
                    f"idres snapshot: {url} answered HTTP {response.status}: {body}",
                    file=sys.stderr,
                )
                return EXIT_FAILED
            with part.open("wb") as f:
                async for piece in response.content.iter_chunked(1 << 20):
                    f.write(piece)
                    size += len(piece)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        part.unlink(missing_ok=True)
        print(f"idres snapshot: cannot read {url}: {exc or type(exc).__name__}", file=sys.stderr)
        return EXIT_FAILED
    part.replace(out)  # whole or not at all: a cut download never takes the name
    print(f"idres snapshot: {size:,} bytes written to {out}")
    return EXIT_OK


def _bench(args: argparse.Namespace) -> int:
    from benchmarks.singles_day import run_args

    return run_args(args)


def _delegate(args: argparse.Namespace) -> int:
    text = args.public_key
    if _is_file(text):
        data = Path(text).read_bytes()
        try:
            der = (
                httpsig.public_key_der(httpsig.load_private_key(data))
                if b"PRIVATE" in data
                else _public_der(data)
            )
        except ValueError as exc:
            raise _Usage(f"--public-key {text}: {exc}") from None
    else:
        try:
            der = base64.b64decode(text, validate=True)
        except ValueError:
            raise _Usage(
                "--public-key: a key file or base64 DER (idres keygen prints it)"
            ) from None

    async def send() -> int:
        async with _client(args) as client:
            return _print_reply(await client.delegate(args.prefix, der, key_index=args.key_index))

    return asyncio.run(send())


def _is_file(text: str) -> bool:
    """Whether ``text`` names a file (a base64 key is often longer than a file name may
    be, which the system refuses to look up)."""
    try:
        return Path(text).is_file()
    except OSError:
        return False


def _public_der(data: bytes) -> bytes:
    """A public key file, PEM or DER, as DER SubjectPublicKeyInfo; ValueError if neither."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        PublicFormat,
        load_der_public_key,
        load_pem_public_key,
    )

    try:
        key = load_pem_public_key(data) if b"-----BEGIN" in data else load_der_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError("not a PEM or DER public key") from exc
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


async def _import(args: argparse.Namespace) -> int:
    from idres.importer import run_import

    async with _client(args) as client:
        return await run_import(
            client,
            Path(args.file),
            batch_size=args.batch_size,
            concurrency=args.concurrency,
            replace=args.replace,
            progress=not args.quiet,
        )


def _cmd_sign(args: argparse.Namespace) -> int:
    """Print RFC 9421 signature headers as a curl config (``curl -K``), for curl users."""
    key_path = args.key or os.environ.get("IDRES_KEY")
    key_id = args.key_id or os.environ.get("IDRES_KEY_ID")
    if not key_path or not key_id:
        raise _Usage("give --key FILE and --key-id INDEX:HANDLE (or IDRES_KEY, IDRES_KEY_ID)")
    try:
        key = httpsig.load_private_key(Path(key_path).read_bytes())
        body = b""
        if args.data is not None:
            body = (
                Path(args.data[1:]).read_bytes()
                if args.data.startswith("@")
                else args.data.encode("utf-8")
            )
    except (OSError, ValueError) as exc:
        raise _Usage(str(exc)) from None
    path, _, query = args.path.partition("?")
    server = args.server or os.environ.get("IDRES_SERVER", DEFAULT_SERVER)
    try:
        authority = httpsig.authority_of(server)
    except ValueError as exc:
        raise _Usage(f"--server: {exc}") from None
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
    headers.update(
        httpsig.sign_request(
            method=args.method.upper(),
            path=path,
            query=query,
            headers=headers,
            body=body,
            key=key,
            keyid=key_id,
            created=int(time.time()),
            nonce=os.urandom(8).hex(),
            authority=authority,  # the signature holds only at this node (@authority)
        )
    )
    for name, value in headers.items():
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        print(f'header = "{name}: {escaped}"')
    return EXIT_OK


def _run_async(coro_fn: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        result: int = asyncio.run(coro_fn(args))
        return result

    return run


def _signing_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", help=f"registry URL (IDRES_SERVER, default {DEFAULT_SERVER})")
    p.add_argument("--key", help="PEM private key file (IDRES_KEY)")
    p.add_argument("--key-id", help="INDEX:HANDLE of the key's HS_PUBKEY (IDRES_KEY_ID)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="idres", description="Identifier-resolution network: register, resolve, sync."
    )
    parser.add_argument("--version", action="version", version=f"idres {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "parse",
        help="parse identifiers of any scheme",
        description="Print scheme, canonical form and routing key of each "
        "identifier, one JSON object per line; exit 2 if any is invalid. '-' "
        "reads one per line from stdin.",
    )
    p.add_argument("identifiers", nargs="+", metavar="IDENTIFIER")
    p.set_defaults(func=_cmd_parse)

    p = sub.add_parser("keygen", help="make a key pair for signing requests")
    p.add_argument("--out", required=True, help="where to write the PEM private key")
    p.add_argument("--alg", choices=("ed25519", "p256"), default="ed25519")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument(
        "--did",
        nargs="?",
        const="",
        metavar="CODE",
        help="also print the key's did:bid address as BIF derives it (and BIF's "
        "publicKeyHex); with CODE, on that sub-chain",
    )
    p.set_defaults(func=_cmd_keygen)

    p = sub.add_parser("serve", help="run one registry node")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--prefix", action="append", help="a prefix this node holds (repeatable)")
    p.add_argument("--admin-key", help="PEM key of the node admin (default: data-dir/admin.pem)")
    p.add_argument("--data-dir")
    p.add_argument(
        "--workers", type=int, help="processes serving the port (IDRES_WORKERS, default 1)"
    )
    p.add_argument(
        "--front",
        choices=("edge", "python"),
        help="what accepts on the port (IDRES_FRONT, default edge): the compiled edge, "
        "which answers cached reads itself, or the Python workers' own front doors",
    )
    p.add_argument("--directory", help="JSON file of signed delegations (a hierarchy)")
    p.add_argument("--name", help="this node's name in --directory")
    p.add_argument("--trust-anchor", help="base64 DER of the super node's key")
    p.add_argument(
        "--client-upstream-rate",
        type=float,
        help="upstream lookups a second one client's batch resolves may start "
        "(IDRES_CLIENT_UPSTREAM_RATE, default 200; bursts of 5 seconds' worth)",
    )
    p.add_argument(
        "--batch-upstream-max",
        type=int,
        help="upstream lookups one POST /api/resolve may start (IDRES_BATCH_UPSTREAM_MAX, "
        "default 100)",
    )
    p.add_argument(
        "--digital-link-host",
        help="the host Digital Link paths are read under, never the Host header "
        "(IDRES_DIGITAL_LINK_HOST, default id.gs1.org)",
    )
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="resolve every lookup upstream (for measuring the cold path)",
    )
    p.add_argument(
        "--kafka",
        metavar="HOST:PORT",
        help="publish this node's chain to Kafka and follow the chains below it (KAFKA_BOOTSTRAP)",
    )
    p.add_argument(
        "--kafka-user",
        metavar="NAME",
        help="authenticate to Kafka as this SASL user, made by idres kafka-acl "
        "(KAFKA_SASL_USERNAME; none: PLAINTEXT)",
    )
    p.add_argument(
        "--kafka-password-file",
        metavar="FILE",
        help="the Kafka user's password, first line of FILE (KAFKA_SASL_PASSWORD)",
    )
    p.add_argument(
        "--kafka-mechanism",
        choices=("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"),
        help="SASL mechanism (KAFKA_SASL_MECHANISM, default SCRAM-SHA-512)",
    )
    p.add_argument(
        "--hash", choices=("sha256", "sm3"), help="hash of this node's chain (IDRES_HASH)"
    )
    p.add_argument(
        "--verify-every",
        type=float,
        metavar="SECONDS",
        help="check what changed in the node's database against its chains this often, "
        "repairing what departs (default 30; 0: off; everything again every 6 hours)",
    )
    p.add_argument(
        "--mirror-of",
        metavar="NODE",
        help="with --kafka: keep and answer copies of NODE's chain and of every chain it "
        "keeps, read from the start of the log or of --snapshot (IDRES_MIRROR_OF)",
    )
    p.add_argument(
        "--snapshot",
        metavar="FILE",
        help="before serving, load the chains this node keeps and does not hold yet "
        "from FILE (made by idres snapshot), checking every block; then read the log "
        "from there (IDRES_SNAPSHOT)",
    )
    p.add_argument(
        "--dns-port",
        type=int,
        help="answer DNS (UDP and TCP) on this port: identifiers under the zone's names, "
        "referrals down the directory (IDRES_DNS_PORT; default off)",
    )
    p.add_argument("--dns-host", help="the DNS face's address (IDRES_DNS_HOST, default --host)")
    p.add_argument(
        "--dns-zone",
        help=f"the network's DNS zone, the same on every node (IDRES_DNS_ZONE, default "
        f"{DEFAULT_ZONE})",
    )
    p.add_argument(
        "--dns-notify",
        action="append",
        metavar="HOST:PORT",
        help="a secondary (Knot, NSD, BIND) to NOTIFY of each new block; it may transfer "
        "the zones (repeatable)",
    )
    p.add_argument(
        "--dns-allow-transfer",
        action="append",
        metavar="ADDRESS",
        help="an address that may transfer the zones (AXFR, IXFR) besides loopback and "
        "the --dns-notify hosts (repeatable)",
    )
    p.add_argument(
        "--handle-port",
        type=int,
        help=f"answer the Handle protocol (RFC 3652; TCP and UDP) on this port, "
        f"{HANDLE_PORT} by convention (IDRES_HANDLE_PORT; default off)",
    )
    p.add_argument(
        "--handle-host", help="the Handle face's address (IDRES_HANDLE_HOST, default --host)"
    )
    p.add_argument(
        "--allow-seckey",
        action="store_true",
        help="accept Handle.Net's Authorization: Basic index:handle with an HS_SECKEY "
        "secret on REST writes, over TLS or from loopback only (IDRES_ALLOW_SECKEY=1; "
        "default off: RFC 9421 signatures only)",
    )
    p.add_argument(
        "--network",
        metavar="HOST[:PORT]",
        help="the network's name, accepted in a signature's @authority beside this node's "
        "own, so that a write redirected to the node holding it still verifies "
        "(IDRES_NETWORK; default none)",
    )
    p.add_argument(
        "--tls-cert",
        metavar="PEM",
        help="serve HTTPS on the port with this certificate chain (IDRES_TLS_CERT; with "
        "--tls-key; default plain HTTP)",
    )
    p.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert (IDRES_TLS_KEY)")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser(
        "up",
        help="run a whole network on this machine (6 nodes)",
        description="One super, two backbone and three sub-chain nodes, with "
        "an embedded PostgreSQL and example identifiers of each scheme.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument(
        "--base-port",
        type=int,
        default=8000,
        help="the super node's port; the others follow (0: any free ports)",
    )
    p.add_argument("--data-dir", help="where keys and data live (IDRES_DATA_DIR)")
    p.add_argument(
        "--kafka",
        metavar="HOST:PORT",
        help="carry the chains over this Kafka broker (KAFKA_BOOTSTRAP) instead of "
        "the in-process log; every node authenticates as KAFKA_SASL_USERNAME / "
        "KAFKA_SASL_PASSWORD if set",
    )
    p.add_argument(
        "--dns-port",
        type=int,
        default=UP_DNS_PORT,
        help="each node answers DNS on this port of its own address 127.0.53.N (default "
        f"53 as root, which a resolver following delegations needs, else {UP_DNS_PORT_USER}"
        "; 0: no DNS)",
    )
    p.add_argument(
        "--handle-port",
        type=int,
        default=UP_HANDLE_PORT,
        help="each node answers the Handle protocol on this port of its own address "
        f"127.0.53.N (default {HANDLE_PORT} as root, else {UP_HANDLE_PORT_USER}; 0: none)",
    )
    p.set_defaults(func=_cmd_up)

    from idres.deploy import add_parser as add_deploy

    add_deploy(sub)

    p = sub.add_parser(
        "kafka-acl",
        help="give each node of a directory its Kafka user and ACLs",
        description="As the Kafka operator (a super user): create the shared topics and "
        "every node's chain topic, set each node's SCRAM password (kept in --passwords, "
        "made on first use), and make each node's ACLs exactly what its place in the "
        "directory needs: write its own chain, read the chains it follows, read and "
        "write the directory topic, write the dead letters. Run again after the "
        "directory changes.",
    )
    p.add_argument("--directory", required=True, help="JSON file of signed delegations")
    p.add_argument("--trust-anchor", required=True, help="base64 DER of the super node's key")
    p.add_argument("--bootstrap", metavar="HOST:PORT", help="the broker (KAFKA_BOOTSTRAP)")
    p.add_argument(
        "--passwords",
        metavar="DIR",
        default="kafka-users",
        help="one file NAME.password a node (mode 600), made if missing (default kafka-users)",
    )
    p.add_argument(
        "--mirror",
        action="append",
        metavar="NAME=NODE",
        help="NAME runs with --mirror-of NODE (repeatable)",
    )
    p.add_argument("--admin-user", help="the operator's SASL user (default KAFKA_SASL_USERNAME)")
    p.add_argument(
        "--admin-password-file", metavar="FILE", help="its password (KAFKA_SASL_PASSWORD)"
    )
    p.add_argument(
        "--dry-run", action="store_true", help="print the ACLs the directory calls for; no Kafka"
    )
    p.set_defaults(func=_cmd_kafka_acl)

    p = sub.add_parser(
        "resolve",
        help="resolve identifiers through the network",
        description="Ask a node (the super node by default) for each "
        "identifier's record; one JSON object per line. Exit 1 if any is "
        "not found or fails, 2 if any is malformed.",
    )
    p.add_argument("identifiers", nargs="+", metavar="IDENTIFIER")
    p.add_argument("--server", help=f"a node's URL (IDRES_SERVER, default {DEFAULT_SERVER})")
    p.add_argument(
        "--no-recursive",
        action="store_true",
        help="ask for a referral instead of a recursive answer",
    )
    p.add_argument("--auth", action="store_true", help="skip caches (authoritative answer)")
    p.set_defaults(func=_run_async(_resolve))

    p = sub.add_parser("register", help="create or replace an identifier's record")
    p.add_argument("handle")
    p.add_argument("--url", action="append", help="a URL value (repeatable)")
    p.add_argument("--value", action="append", metavar="TYPE=TEXT", help="a string value")
    p.add_argument("--values-file", help="JSON file with the values (Handle REST shape)")
    p.add_argument("--create-only", action="store_true", help="fail if it exists")
    _signing_options(p)
    p.set_defaults(func=_run_async(_register))

    p = sub.add_parser("delete", help="delete an identifier")
    p.add_argument("handle")
    _signing_options(p)
    p.set_defaults(func=_run_async(_delete))

    p = sub.add_parser("history", help="every version of an identifier")
    p.add_argument("handle")
    _signing_options(p)
    p.set_defaults(func=_run_async(_history))

    p = sub.add_parser(
        "verify",
        help="check a node's records against the signed chains it holds",
        description="Every block signed by its node and linked to the one before, every "
        "record equal to the last operation on it, every child block anchored in its "
        "parent's chain. Exit status 1 if anything does not check.",
    )
    p.add_argument(
        "node", nargs="?", metavar="URL", help=f"the node to check (default {DEFAULT_SERVER})"
    )
    p.add_argument("--server", help="the node to check, as the argument")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for it")
    p.add_argument(
        "--proof",
        metavar="FILE",
        help="instead, check offline an answer saved from GET /api/handles/{id}?proof=true",
    )
    p.add_argument(
        "--trust-anchor",
        metavar="BASE64",
        help="with --proof: the super node's key (base64 DER) the proof must chain to; "
        "without it the proof checks only its own consistency, and fails unless --partial",
    )
    p.add_argument(
        "--partial",
        action="store_true",
        help="with --proof: accept a proof without a trust anchor or that ends below "
        "the super node's chain (say so, but exit 0)",
    )
    p.set_defaults(func=_run_async(_verify))

    p = sub.add_parser(
        "snapshot",
        help="save every chain a node holds to a file, to start a new node from",
        description="Asks the node on this machine for its snapshot: every block of "
        "every chain it holds, read at one point. Start a new node (say a mirror) with "
        "idres serve --snapshot FILE; it checks each block, as it would on the log.",
    )
    p.add_argument("--server", default="http://127.0.0.1:8000", help="the node to ask")
    p.add_argument("--out", required=True, metavar="FILE", help="where to write it")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for it")
    p.set_defaults(func=_run_async(_snapshot))

    p = sub.add_parser(
        "bench",
        help="the Singles' Day benchmark: a whole network under open-loop load, and a report",
        description="Builds a dataset, starts a network (1 super, 2 backbone, 3 sub-chain "
        "nodes on Kafka), drives open-loop traffic at the super node beside nginx and a "
        "bare aiohttp handler, and writes a report folder: summary.md, raw histograms, "
        "PNG charts. Needs nginx and wrk (apt-get, as root) and Go (builds vegeta).",
    )
    from benchmarks.profiles import add_arguments

    add_arguments(p)
    p.set_defaults(func=_bench)

    p = sub.add_parser("get", help="read an identifier's record from a registry node")
    p.add_argument("handle")
    _signing_options(p)
    p.set_defaults(func=_run_async(_get))

    p = sub.add_parser("delegate", help="delegate a child prefix to a key")
    p.add_argument("prefix", help="e.g. 88.100.1, gs1:6901234, oid:1.2.156.3001")
    p.add_argument("--public-key", required=True, help="key file or base64 DER public key")
    p.add_argument("--key-index", type=int, default=300)
    _signing_options(p)
    p.set_defaults(func=_delegate)

    p = sub.add_parser(
        "sign",
        help="signature headers for curl (curl -K <(idres sign ...))",
        description="Sign a request as the registry expects (RFC 9421 with a "
        "Content-Digest) and print the headers as a curl config.",
    )
    p.add_argument("method", help="PUT, DELETE, POST or GET")
    p.add_argument(
        "path",
        help="the request path as sent, with its query, e.g. "
        "/api/handles/88.100.1/ABC?overwrite=false",
    )
    p.add_argument("--data", help="the body as sent: text, or @FILE")
    p.add_argument("--idempotency-key", help="also send and sign this Idempotency-Key")
    p.add_argument(
        "--server",
        help="the node the request goes to, as curl will reach it; the signature "
        f"covers its host[:port] (IDRES_SERVER, default {DEFAULT_SERVER})",
    )
    p.add_argument("--key", help="PEM private key file (IDRES_KEY)")
    p.add_argument("--key-id", help="INDEX:HANDLE of the key's HS_PUBKEY (IDRES_KEY_ID)")
    p.set_defaults(func=_cmd_sign)

    p = sub.add_parser("import", help="register identifiers from a CSV or JSON Lines file")
    p.add_argument("file")
    p.add_argument("--batch-size", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--replace", action="store_true", help="replace existing records")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _signing_options(p)
    p.set_defaults(func=_run_async(_import))
    return parser


def _logging() -> None:
    """Warnings and errors to stderr, one line each with time and source. aiokafka
    reports every failed reconnect (ten a second in an outage); sync says once that
    the log is down and once that it is back, so only aiokafka's critical errors show."""
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _logging()
    try:
        status: int = args.func(args)
    except _Usage as exc:
        print(f"idres {args.command}: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except IdresError as exc:
        print(f"idres {args.command}: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (| head): stop quietly, and keep Python from
        # complaining again when it flushes stdout at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    except OSError as exc:
        print(f"idres {args.command}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    return status
