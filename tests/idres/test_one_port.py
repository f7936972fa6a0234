"""``idres serve``: one port a node, under uvloop, with several workers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import asyncpg
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)

from benchmarks.testbed import children, niceness
from tests.handle_probe import RESPONSE, probe
from tests.resolver.handle.conftest import ADMIN_KEY

pytestmark = [pytest.mark.postgres]


RUN = [sys.executable, "-m", "idres"]


def _serve(
    db_url: str, tmp_path: Path, workers: int, *extra: str, admin: Path | None = None
) -> tuple[subprocess.Popen[str], Path]:
    """``idres serve`` on a free port with its own admin key (or ``admin``, a PEM
    key); the key's path."""
    if admin is None:
        admin = tmp_path / "admin.pem"
        assert subprocess.run([*RUN, "keygen", "--out", str(admin)], check=False).returncode == 0
    proc = subprocess.Popen(
        [
            *RUN,
            *("serve", "--port", "0", "--workers", str(workers), "--prefix", "88.100"),
            *("--admin-key", str(admin)),
            *extra,
        ],
        env={**os.environ, "DATABASE_URL": db_url, "IDRES_DATA_DIR": str(tmp_path / "d")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, admin


def _serving(proc: subprocess.Popen[str]) -> str:
    """The URL the node says it serves on, once it does."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    api = re.search(r"serving (http://\S+) ", line)
    assert api is not None, line
    return api.group(1)


def test_idres_serve_answers_reads_writes_and_metrics_on_one_port(
    db_url: str, tmp_path: Path
) -> None:
    proc, admin = _serve(db_url, tmp_path, 2, "--dns-port", "0", "--handle-port", "0")
    run = RUN
    try:
        url = _serving(proc)
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(5)]
        dns_at = re.search(r"DNS on ([\d.]+):(\d+) ", "".join(lines))
        assert dns_at is not None, lines
        handle_at = re.search(r"Handle protocol on ([\d.]+):(\d+) ", "".join(lines))
        assert handle_at is not None, lines
        registered = subprocess.run(
            [
                *run,
                *("register", "88.100.1/ONE-PORT", "--url", "https://e.x/f", "--server", url),
                *("--key", str(admin), "--key-id", "300:0.NA/node.admin"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert registered.returncode == 0, registered.stderr
        for _ in range(4):  # whichever worker takes the connection
            with urllib.request.urlopen(url + "/api/handles/88.100.1/ONE-PORT") as resp:
                assert "aiohttp" not in resp.headers.get("Server", "")  # the front door's
                body = json.loads(resp.read())
            assert body["values"][0]["data"]["value"] == "https://e.x/f"
        # the DNS face, on sockets the two workers share (UDP, then TCP)
        query = dns.message.make_query("ONE-PORT._.1.100.88.handle.idres.internal.", "URI")
        host, port = dns_at.group(1), int(dns_at.group(2))
        for ask in (dns.query.udp, dns.query.tcp):
            answer = ask(query, host, port=port, timeout=5)
            assert [r.target for r in answer.answer[0]] == [b"https://e.x/f"]
        # the Handle face, on sockets the two workers share, with CNRI's client library
        for transport in ("--udp", "--tcp"):
            status, hdl = probe("resolve", transport, *handle_at.groups(), "88.100.1/ONE-PORT")
            assert (status, hdl["responseCode"]) == (RESPONSE, 1), hdl
            assert [v["data"] for v in hdl["values"]] == ["https://e.x/f"]
        with urllib.request.urlopen(url + "/metrics") as resp:
            metrics = resp.read().decode()
        assert 'idres_shed_total{node="node",cost="lookup"} 0' in metrics
        assert 'idres_dns_serial{node="node"}' in metrics  # the DNS face's series
        assert 'idres_handle_requests_total{node="node"}' in metrics
        assert "idres_front_connections" in metrics
        # every probe of the serving loop lands in the stalls histogram
        probes = re.search(r'idres_front_loop_stalls_seconds_count\{node="node"\} (\d+)', metrics)
        assert probes is not None
        assert int(probes.group(1)) > 0
        assert 'idres_front_loop_stalls_seconds_bucket{node="node",le="+Inf"} ' in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err


def test_handle_admin_writes_succeed_whichever_worker_each_connection_reaches(
    db_url: str, tmp_path: Path
) -> None:
    """The CNRI client answers a challenge on a new TCP connection, which either
    worker may accept: the pending challenge is the node's (in its PostgreSQL), not
    one process's, so every authenticated create succeeds, not about half of them."""
    private = load_pem_private_key(ADMIN_KEY.read_bytes(), password=None)
    public = tmp_path / "admin-public.pem"
    public.write_bytes(
        private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    proc, _ = _serve(db_url, tmp_path, 2, "--handle-port", "0", admin=public)
    try:
        url = _serving(proc)
        assert proc.stdout is not None
        lines: list[str] = []
        handle_at = None
        while handle_at is None and len(lines) < 10:  # the line naming the Handle face
            lines.append(proc.stdout.readline())
            handle_at = re.search(r"Handle protocol on ([\d.]+):(\d+) ", lines[-1])
        assert handle_at is not None, lines
        outcomes = []
        for n in range(10):
            status, out = probe(
                *("create", "--tcp", *handle_at.groups(), f"88.100.1/TWO-WORKERS-{n}"),
                *("--admin", "0.NA/node.admin:300", "--key", str(ADMIN_KEY)),
                *("--value", f"1:URL:https://e.x/{n}"),
            )
            assert status == RESPONSE, out
            outcomes.append(out["responseCode"])
        assert outcomes == [1] * 10, outcomes
        for n in (0, 9):
            with urllib.request.urlopen(f"{url}/api/handles/88.100.1/TWO-WORKERS-{n}") as resp:
                body = json.loads(resp.read())
            assert body["values"][0]["data"]["value"] == f"https://e.x/{n}"
        # a list longer than one message (500 handles) reaches the client whole through
        # the node's edge, part by part (resolver/edge/forward.go)
        bulk = [f"88.100.1/BULK-{n:04d}" for n in range(1, 601)]
        asyncio.run(_insert_identifiers(db_url, bulk))
        status, out = probe(
            *("list", "--tcp", *handle_at.groups(), "0.NA/88.100.1"),
            *("--admin", "0.NA/node.admin:300", "--key", str(ADMIN_KEY)),
        )
        assert status == RESPONSE, out
        assert out["responseCode"] == 1, out
        made = [f"88.100.1/TWO-WORKERS-{n}" for n in range(10)]
        assert out["handles"] == sorted(made + bulk)
        assert out["messages"] == 2, out  # 610 handles: 500, then 110
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err


async def _insert_identifiers(db_url: str, handles: list[str]) -> None:
    """Identifier rows alone (what a listing reads) under 88.100.1, straight into the
    node's database."""
    conn = await asyncpg.connect(db_url)
    try:
        await conn.executemany(
            "INSERT INTO identifiers (handle, scheme, routing_key, version)"
            " VALUES ($1, 'handle', 'handle:88.100.1', 1)",
            [(h,) for h in handles],
        )
    finally:
        await conn.close()


def test_a_node_whose_sync_process_dies_stops_and_says_so(db_url: str, tmp_path: Path) -> None:
    """A node that serves answers its sync process no longer keeps current would go
    on answering from copies nobody updates: it stops instead, naming what died."""
    proc, _ = _serve(db_url, tmp_path, workers=1)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "a sync process" in line, line
        deadline = time.monotonic() + 10
        while len(kids := children(proc.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)  # the line is printed before the fork
        assert len(kids) == 3  # the edge, one worker, one sync process
        (sync,) = [c for c in kids if niceness(c) > 0]  # the sync process runs niced
        os.kill(sync, signal.SIGKILL)
        status = proc.wait(timeout=30)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert status == 1
    assert f"sync process {sync} exited" in err
    assert "Traceback" not in err, err


def test_a_node_killed_outright_takes_its_processes_with_it(db_url: str, tmp_path: Path) -> None:
    """kill -9 of ``idres serve`` gives it no chance to stop its children: they go by
    themselves (the workers and sync process at once, the edge within a second),
    rather than serve, or apply, for nobody."""
    proc, _ = _serve(db_url, tmp_path, workers=2)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        deadline = time.monotonic() + 10
        while len(kids := children(proc.pid)) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(kids) == 4  # the edge, two workers, the sync process
        proc.kill()
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while (alive := [k for k in kids if _alive(k)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive, f"still running after the node was killed: {alive}"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; its parent has not read its status yet


def _get(url: str) -> tuple[int, str, dict[str, object]]:
    try:
        with urllib.request.urlopen(url) as resp:
            return resp.status, resp.headers.get("Idres-Source", ""), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Idres-Source", ""), json.loads(exc.read())


def _until_from_cache(url: str) -> int:
    """Read ``url`` until the edge answers it from memory; the status."""
    deadline = time.monotonic() + 5
    while True:
        status, source, _ = _get(url)
        if source == "cache":
            return status
        assert time.monotonic() < deadline, f"never from the edge's memory (last: {source})"
        time.sleep(0.05)


def _addr(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


def test_a_read_the_edge_has_not_cached_is_answered_from_the_answers_table(
    db_url: str, tmp_path: Path
) -> None:
    """The edge answers a plain read it lacks from the node's answers table (written
    with each record), keeps it, and forgets it when the record changes."""
    proc, admin = _serve(db_url, tmp_path, workers=1)
    try:
        url = _serving(proc)

        def register(target: str, handle: str = "88.100.1/STORED") -> None:
            done = subprocess.run(
                [
                    *RUN,
                    *("register", handle, "--url", target, "--server", url),
                    *("--key", str(admin), "--key-id", "300:0.NA/node.admin"),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            assert done.returncode == 0, done.stderr

        register("https://e.x/first")
        status, source, body = _get(url + "/api/handles/88.100.1/STORED")
        assert (status, source) == (200, "store"), body
        values = body["values"]
        assert isinstance(values, list)
        assert values[0]["data"]["value"] == "https://e.x/first"
        # kept: unless the write's own notice reached the edge during that read, the
        # next read is from memory (a notice heard meanwhile keeps an answer out)
        _until_from_cache(url + "/api/handles/88.100.1/STORED")

        register("https://e.x/second")  # the edge hears the commit and forgets
        deadline = time.monotonic() + 1.0
        while True:
            status, source, body = _get(url + "/api/handles/88.100.1/STORED")
            values = body["values"]
            assert isinstance(values, list)
            if values[0]["data"]["value"] == "https://e.x/second":
                break
            assert time.monotonic() < deadline, "the edge kept the old answer past 1 s"
            time.sleep(0.01)
        # "not found" is kept too, and forgotten when a write here registers it
        assert _until_from_cache(url + "/api/handles/88.100.1/LATER") == 404
        register("https://e.x/later", "88.100.1/LATER")
        deadline = time.monotonic() + 1.0
        while _get(url + "/api/handles/88.100.1/LATER")[0] == 404:
            assert time.monotonic() < deadline, "the edge kept 'not found' past 1 s"
            time.sleep(0.01)
        # a spelling other than the stored one, and an identifier nobody registered:
        # the workers answer
        status, source, _ = _get(url + "/api/handles/88.100.1%2FSTORED")
        assert (status, source) == (200, "local")
        status, source, body = _get(url + "/api/handles/88.100.1/NOBODY")
        assert (status, body["responseCode"]) == (404, 100)
        assert source != "store"
        # the node's own admin record is held here, but no node answers 0.NA/ names
        # from its copy: not from the table either
        status, source, _ = _get(url + "/api/handles/0.NA/node.admin")
        assert source != "store"
        # a target that is not UTF-8 (PostgreSQL could not take it as text, nor the
        # workers' parser as a URI): refused by the edge, which goes on answering
        with socket.create_connection(_addr(url)) as raw:
            raw.sendall(b"GET /api/handles/88.100.1/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n")
            head = raw.recv(65536).split(b"\r\n", 1)[0]
        assert head.split()[1] == b"400", head  # refused by the edge: not a URI
        register("https://e.x/after", "88.100.1/AFTER")
        assert _get(url + "/api/handles/88.100.1/AFTER")[:2] == (200, "store")
        with urllib.request.urlopen(url + "/metrics") as resp:
            metrics = resp.read().decode()
        answered = re.search(r'idres_edge_store_answers_total\{node="node"\} (\d+)', metrics)
        assert answered is not None, metrics
        assert int(answered.group(1)) >= 2, metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err


def _metric(url: str, name: str) -> int:
    with urllib.request.urlopen(url + "/metrics") as resp:
        found = re.search(rf'^{name}\{{node="node"\}} (\d+)', resp.read().decode(), re.MULTILINE)
    assert found is not None, name
    return int(found.group(1))


def _register(url: str, admin: Path, handle: str, target: str) -> None:
    done = subprocess.run(
        [
            *RUN,
            *("register", handle, "--url", target, "--server", url),
            *("--key", str(admin), "--key-id", "300:0.NA/node.admin"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_the_edge_answers_dns_over_udp_from_what_it_keeps_and_forgets_a_changed_record(
    db_url: str, tmp_path: Path
) -> None:
    """Behind the edge a query answered once is answered again from the edge's memory
    (resolver/edge/dns.go), under the asker's ID; a change to the record reaches DNS
    askers at once; what is not a query gets what the workers give it."""
    proc, admin = _serve(db_url, tmp_path, 1, "--dns-port", "0", "--dns-host", "127.0.0.1")
    try:
        url = _serving(proc)
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(4)]
        dns_at = re.search(r"DNS on ([\d.]+):(\d+) ", "".join(lines))
        assert dns_at is not None, lines
        host, port = dns_at.group(1), int(dns_at.group(2))
        _register(url, admin, "88.100.1/EDGE-DNS", "https://e.x/one")
        name = "EDGE-DNS._.1.100.88.handle.idres.internal."
        deadline = time.monotonic() + 10
        while True:  # kept once the edge hears the node's changes (it starts listening)
            query = dns.message.make_query(name, "URI")  # a new ID each time
            answer = dns.query.udp(query, host, port=port, timeout=5)
            assert answer.id == query.id
            assert [r.target for r in answer.answer[0]] == [b"https://e.x/one"]
            hits = _metric(url, "idres_edge_dns_hits_total")
            if hits >= 2 or time.monotonic() > deadline:
                break
        assert hits >= 2
        assert _metric(url, "idres_edge_dns_entries") >= 1

        _register(url, admin, "88.100.1/EDGE-DNS", "https://e.x/two")
        deadline = time.monotonic() + 10
        while True:  # the notice reaches the edge within milliseconds
            answer = dns.query.udp(dns.message.make_query(name, "URI"), host, port=port, timeout=5)
            targets = [r.target for r in answer.answer[0]]
            if targets == [b"https://e.x/two"] or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert targets == [b"https://e.x/two"]

        # a name nobody registered: NXDOMAIN with the zone's SOA, through the workers
        missing = dns.message.make_query("NOBODY._.1.100.88.handle.idres.internal.", "URI")
        answer = dns.query.udp(missing, host, port=port, timeout=5)
        assert answer.rcode() == dns.rcode.NXDOMAIN
        assert answer.authority[0].rdtype == dns.rdatatype.SOA
        # bytes that do not parse: FORMERR under their ID; too short for a header: none
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(5)
            udp.sendto(
                b"\x12\x34" + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07broken", (host, port)
            )
            reply = udp.recv(512)
            assert reply[:2] == b"\x12\x34"
            assert reply[3] & 0x0F == dns.rcode.FORMERR
            udp.sendto(b"\x00\x01", (host, port))
            udp.settimeout(0.5)
            with pytest.raises(TimeoutError):
                udp.recv(512)
        assert _metric(url, "idres_edge_dns_malformed_total") == 1
        # TCP stays with the workers, and answers the same
        answer = dns.query.tcp(dns.message.make_query(name, "URI"), host, port=port, timeout=5)
        assert [r.target for r in answer.answer[0]] == [b"https://e.x/two"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err


def test_a_write_whose_request_line_is_long_gets_the_workers_400_not_a_502(
    db_url: str, tmp_path: Path
) -> None:
    """The edge passes heads of up to 16 KiB to the workers; a worker that refused a line
    over aiohttp's default 8190 bytes closed the socket while the edge still sent the
    body, and the client got 502 (found by schemathesis with signed writes). A worker
    whose loop runs late may shed the write (503, Retry-After): the client asks again,
    as told; that was a 502 too until the door read the body it refused."""
    proc, _ = _serve(db_url, tmp_path, 1)
    try:
        url = _serving(proc)
        for _ in range(10):
            request = urllib.request.Request(
                url + "/api/handles/88.100.1/" + "a" * 9000,
                data=b"x" * 1_000_000,
                method="PUT",
                headers={"Content-Type": "application/json"},
            )
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request)
            if refused.value.code != 503:
                break
            refused.value.close()  # its socket: an HTTPError left open leaks it (GC later)
            time.sleep(float(refused.value.headers["Retry-After"]))
        assert refused.value.code == 400
        assert json.loads(refused.value.read())["responseCode"] == 102
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err
