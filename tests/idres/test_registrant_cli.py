"""The registrant's whole flow, and ``idres verify``, with the real ``idres`` commands and
a real ``idres serve``."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from benchmarks.loadgen import free_port

pytestmark = [pytest.mark.postgres]
ADMIN_ID = "300:0.NA/node.admin"


def idres(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "idres", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``idres serve`` on a free port over the test's database; yields (URL, admin key)."""
    admin = tmp_path / "admin.pem"
    assert idres("keygen", "--out", str(admin)).returncode == 0
    port = free_port()  # below the ephemeral range: no outgoing connection takes it
    env = {**os.environ, "DATABASE_URL": db_url, "IDRES_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "idres",
            "serve",
            "--port",
            str(port),
            "--prefix",
            "88.100",
            "--admin-key",
            str(admin),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "serving" in first, first + (proc.stderr.read() if proc.stderr else "")
        yield f"http://127.0.0.1:{port}", admin
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err  # SIGTERM is a clean stop
    assert "Traceback" not in err


def test_keygen_delegate_register_history_delete(server: tuple[str, Path], tmp_path: Path) -> None:
    url, admin = server
    ent = tmp_path / "enterprise.pem"
    made = idres("keygen", "--out", str(ent), "--alg", "p256")
    assert made.returncode == 0
    assert json.loads(made.stdout)["alg"] == "p256"
    assert oct(ent.stat().st_mode & 0o777) == "0o600"

    as_admin = ["--server", url, "--key", str(admin), "--key-id", ADMIN_ID]
    as_ent = ["--server", url, "--key", str(ent), "--key-id", "300:0.NA/88.100.1"]
    delegated = idres("delegate", "88.100.1", "--public-key", str(ent), *as_admin)
    assert delegated.returncode == 0, delegated.stderr

    reg = idres(
        "register",
        "88.100.1/ABC-123",
        "--url",
        "https://example.com/p/ABC",
        "--value",
        "EMAIL=ops@example.com",
        *as_ent,
    )
    assert reg.returncode == 0, reg.stderr
    assert json.loads(reg.stdout) == {"responseCode": 1, "handle": "88.100.1/ABC-123", "version": 1}

    stranger = idres(
        "register",
        "88.100.1/ABC-123",
        "--url",
        "https://evil.example/",
        *as_admin[:2],
        "--key",
        str(ent),
        "--key-id",
        "300:0.NA/88.100.9",
    )
    assert stranger.returncode == 1
    assert "HTTP 403" in stranger.stderr

    got = idres("get", "88.100.1/ABC-123", "--server", url)
    assert [v["type"] for v in json.loads(got.stdout)["values"]] == ["URL", "EMAIL"]

    assert idres("delete", "88.100.1/ABC-123", *as_ent).returncode == 0
    # who changed it is for its administrators (a signed read); anyone sees what and when
    hist = idres("history", "88.100.1/ABC-123", *as_ent)
    entries = json.loads(hist.stdout)["history"]
    assert [(e["op"], e["actor"]) for e in entries] == [
        ("create", "300:0.NA/88.100.1"),
        ("delete", "300:0.NA/88.100.1"),
    ]
    anonymous = json.loads(idres("history", "88.100.1/ABC-123", "--server", url).stdout)
    assert [(e["op"], "actor" in e) for e in anonymous["history"]] == [
        ("create", False),
        ("delete", False),
    ]


def test_delegate_takes_an_rsa_key_as_long_base64_or_a_der_file(
    server: tuple[str, Path], tmp_path: Path
) -> None:
    """An RSA public key in base64 is longer than a file name may be: it is a key, not
    a file that cannot be looked up; a DER file (what HdlProbe keygen-rsa writes) is read."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    url, admin = server
    as_admin = ["--server", url, "--key", str(admin), "--key-id", ADMIN_ID]
    for n, prefix in enumerate(("88.100.71", "88.100.72")):
        der = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            .public_key()
            .public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        )
        given = base64.b64encode(der).decode()
        if n:
            (tmp_path / "key.der").write_bytes(der)
            given = str(tmp_path / "key.der")
        done = idres("delegate", prefix, "--public-key", given, *as_admin)
        assert done.returncode == 0, done.stderr
        got = idres("get", f"0.NA/{prefix}", *as_admin)
        assert base64.b64encode(der).decode() in got.stdout


def test_missing_key_options_are_a_usage_error(server: tuple[str, Path]) -> None:
    url, _ = server
    proc = idres(
        "register",
        "88.100.1/X",
        "--url",
        "https://e.x/",
        "--server",
        url,
        env={k: v for k, v in os.environ.items() if not k.startswith("IDRES_KEY")},
    )
    assert proc.returncode == 2
    assert "--key" in proc.stderr
    assert "Traceback" not in proc.stderr


def write_csv(path: Path, rows: int, bad: tuple[int, ...] = ()) -> None:
    with path.open("w") as f:
        f.write("handle,URL,EMAIL\n")
        for n in range(rows):
            handle = f"88.100.1/bad {n}" if n in bad else f"88.100.1/SKU-{n:06d}"
            f.write(f"{handle},https://example.com/p/{n},ops@example.com\n")


def test_import_reports_row_errors_and_registers_the_rest(
    server: tuple[str, Path], tmp_path: Path, db_url: str
) -> None:
    url, admin = server
    data = tmp_path / "products.csv"
    write_csv(data, 3000, bad=(7, 2500))
    proc = idres(
        "import",
        str(data),
        "--batch-size",
        "500",
        "--server",
        url,
        "--key",
        str(admin),
        "--key-id",
        ADMIN_ID,
    )
    assert proc.returncode == 1
    assert "2998 registered, 2 rows failed" in proc.stderr
    assert "3000/3000" in proc.stderr  # the progress bar reached the end
    report = (tmp_path / "products.csv.errors.jsonl").read_text()
    errors = sorted((json.loads(line) for line in report.splitlines()), key=lambda e: e["line"])
    assert [(e["line"], e["responseCode"]) for e in errors] == [(9, 102), (2502, 102)]
    assert count_handles(db_url) == 2998


def count_handles(db_url: str) -> int:
    import asyncio

    async def count() -> int:
        conn = await asyncpg.connect(db_url)
        try:
            # one statement, one snapshot: in-flight batches commit both or neither
            row = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM identifiers WHERE handle LIKE '88.100.1/SKU-%'),"
                " (SELECT count(*) FROM history WHERE handle LIKE '88.100.1/SKU-%')"
            )
            assert row[0] == row[1]  # one version per identifier: nothing applied twice
            n: int = row[0]
            return n
        finally:
            await conn.close()

    return asyncio.run(count())


def batches_answered(checkpoint: Path) -> int:
    try:
        return len(json.loads(checkpoint.read_text())["done"])
    except (OSError, ValueError):
        return 0


def test_an_interrupted_import_resumes_without_duplicates(
    server: tuple[str, Path], tmp_path: Path, db_url: str
) -> None:
    url, admin = server
    data = tmp_path / "big.csv"
    rows = 30_000  # about 5 s at 6,000 rows/s: the interrupt lands mid-import
    write_csv(data, rows)
    args = [
        sys.executable,
        "-m",
        "idres",
        "import",
        str(data),
        "--batch-size",
        "200",
        "--concurrency",
        "2",
        "--server",
        url,
        "--key",
        str(admin),
        "--key-id",
        ADMIN_ID,
    ]
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as at a terminal: a shell running us in the background ignores SIGINT,
        # and Python then never raises KeyboardInterrupt in the child
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    checkpoint = tmp_path / "big.csv.idres-import.json"
    deadline = time.monotonic() + 60
    while not batches_answered(checkpoint) and time.monotonic() < deadline:
        time.sleep(0.05)  # the checkpoint exists from the start; wait for an answered batch
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    partial = count_handles(db_url)
    assert 0 < partial < rows

    resumed = idres(
        "import",
        str(data),
        "--batch-size",
        "200",
        "--server",
        url,
        "--key",
        str(admin),
        "--key-id",
        ADMIN_ID,
        "--quiet",
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"{rows} registered" in resumed.stderr
    assert count_handles(db_url) == rows  # every row once: no row written twice
    assert not checkpoint.exists()


def wait_for_a_batch_at_the_server(db_url: str, *, busy: bool, timeout: float = 60) -> None:
    """Until a write with an Idempotency-Key (a batch) has been in its transaction at the
    server for over 100 ms, not yet answered (``busy``); or until none has been for
    half a second (not ``busy``)."""
    import asyncio

    async def wait() -> None:
        conn = await asyncpg.connect(db_url)
        try:
            deadline = time.monotonic() + timeout
            quiet_since = time.monotonic()
            while time.monotonic() < deadline:
                writing = await conn.fetchval(
                    "SELECT count(*) FROM pg_locks l"
                    " JOIN pg_stat_activity a ON a.pid = l.pid"
                    " WHERE l.database = (SELECT oid FROM pg_database"
                    "                     WHERE datname = current_database())"
                    " AND l.relation = 'idempotency'::regclass AND l.mode = 'RowExclusiveLock'"
                    " AND clock_timestamp() - a.xact_start > interval '100 milliseconds'"
                )
                if writing:
                    quiet_since = time.monotonic()
                    if busy:
                        return
                elif not busy and time.monotonic() - quiet_since > 0.5:
                    return
                await asyncio.sleep(0.02)
            raise AssertionError(f"the server never became {'busy' if busy else 'idle'}")
        finally:
            await conn.close()

    asyncio.run(wait())


def versions_of_skus(db_url: str) -> set[int]:
    import asyncio

    async def read() -> set[int]:
        conn = await asyncpg.connect(db_url)
        try:
            rows = await conn.fetch(
                "SELECT DISTINCT version FROM identifiers WHERE handle LIKE '88.100.1/SKU-%'"
            )
            return {r["version"] for r in rows}
        finally:
            await conn.close()

    return asyncio.run(read())


def test_an_import_interrupted_before_its_first_answer_resumes_and_reports_truthfully(
    server: tuple[str, Path], tmp_path: Path, db_url: str
) -> None:
    """Issue 16: Ctrl-C while the first batches are at the server, unanswered. The
    server commits them after the client is gone; the same command again must resume
    that run (its batches answered from the first time), not report its rows as
    failed because they "already exist"."""
    url, admin = server
    data = tmp_path / "products.csv"
    rows = 30_000
    write_csv(data, rows)
    command = [
        *("import", str(data), "--batch-size", "10000", "--server", url),
        *("--key", str(admin), "--key-id", ADMIN_ID),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "idres", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as at a terminal
    )
    try:
        wait_for_a_batch_at_the_server(db_url, busy=True)
    finally:
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "of 30000 rows answered" in err
    assert "run the same command again to resume" in err
    wait_for_a_batch_at_the_server(db_url, busy=False)
    assert count_handles(db_url) > 0  # what the interrupted run sent was applied all the same

    resumed = idres(*command, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert f"idres import: {rows} registered" in resumed.stderr
    assert "failed" not in resumed.stderr
    assert not (tmp_path / "products.csv.errors.jsonl").exists()
    assert count_handles(db_url) == rows  # every row once
    assert versions_of_skus(db_url) == {1}  # and never written twice


def test_the_same_flow_with_curl_and_idres_sign(server: tuple[str, Path], tmp_path: Path) -> None:
    url, admin = server
    values = tmp_path / "values.json"
    values.write_text(
        '{"values": [{"index": 1, "type": "URL", "data": "https://example.com/p/CURL"}]}'
    )
    env = {**os.environ, "IDRES_KEY": str(admin), "IDRES_KEY_ID": ADMIN_ID, "IDRES_SERVER": url}
    idres_cmd = f"{sys.executable} -m idres"

    def curl(script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", script], capture_output=True, text=True, timeout=60, check=False, env=env
        )

    put = curl(
        f"curl -sS -K <({idres_cmd} sign PUT /api/handles/88.100.1/CURL?overwrite=false"
        f" --data @{values}) -X PUT -H 'Content-Type: application/json'"
        f" --data-binary @{values} '{url}/api/handles/88.100.1/CURL?overwrite=false'"
    )
    assert json.loads(put.stdout) == {"responseCode": 1, "handle": "88.100.1/CURL", "version": 1}, (
        put.stderr
    )
    got = curl(f"curl -sS {url}/api/handles/88.100.1/CURL")
    assert json.loads(got.stdout)["values"][0]["data"]["value"] == "https://example.com/p/CURL"
    unsigned = curl(f"curl -sS -X DELETE {url}/api/handles/88.100.1/CURL")
    assert json.loads(unsigned.stdout)["responseCode"] == 402
    deleted = curl(
        f"curl -sS -K <({idres_cmd} sign DELETE /api/handles/88.100.1/CURL)"
        f" -X DELETE {url}/api/handles/88.100.1/CURL"
    )
    assert json.loads(deleted.stdout)["version"] == 2, deleted.stderr


def test_an_import_with_a_key_that_may_not_write_stops_instead_of_hanging(
    server: tuple[str, Path], tmp_path: Path
) -> None:
    url, admin = server
    data = tmp_path / "refused.csv"
    write_csv(data, 40_000)  # far more batches than the queue holds
    proc = idres(
        "import",
        str(data),
        "--batch-size",
        "200",
        "--server",
        url,
        "--key",
        str(admin),
        "--key-id",
        "300:0.NA/88.100.404",
        "--quiet",
        timeout=60,
    )
    assert proc.returncode == 1
    assert "refused: HTTP 403" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_import_reads_spreadsheet_csv_and_reports_bytes_that_are_not_utf8(
    server: tuple[str, Path], tmp_path: Path
) -> None:
    url, admin = server
    data = tmp_path / "excel.csv"
    data.write_bytes(
        "\ufeffhandle,URL:1\n".encode() + b"88.100.1/OK,https://e.x/ok\n"
        b"88.100.1/caf\xe9,https://e.x/latin1\n"
    )
    proc = idres(
        "import", str(data), "--server", url, "--key", str(admin), "--key-id", ADMIN_ID, "--quiet"
    )
    assert proc.returncode == 1, proc.stderr
    assert "1 registered, 1 rows failed" in proc.stderr
    assert "line 3: the line is not UTF-8" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_verify_takes_the_node_url_as_its_argument(server: tuple[str, Path]) -> None:
    """Issue 16: ``idres verify http://host:port`` is what people type; --server still works."""
    url, _ = server
    for args in ([url], [f"{url}/"], ["--server", url], [url, "--server", url]):
        checked = idres("verify", *args)
        assert checked.returncode == 0, (args, checked.stdout + checked.stderr)
        assert checked.stdout.startswith("node node: chains node (")
        assert checked.stdout.rstrip().endswith("OK")
    both = idres("verify", url, "--server", "http://127.0.0.1:9")
    assert both.returncode == 2
    assert "two nodes given" in both.stderr
    bare = idres("verify", url.removeprefix("http://"))
    assert bare.returncode == 2
    assert "give the node's URL" in bare.stderr
