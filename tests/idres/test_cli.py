"""``idres parse`` as a user runs it: a real process, its output and its exit status."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def run(*args: str | bytes, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "idres", *args],
        capture_output=True,
        input=stdin,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONUTF8": "1"},
    )


def lines(out: bytes) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.decode().splitlines()]


def test_parse_prints_one_json_object_per_identifier() -> None:
    proc = run(
        "parse",
        "88.100.1/ABC-123",
        "06901234567892",
        "1.2.156.3001.1",
        "did:bid:ab12:efGsChQR2U32pvwJcDNPoYHhGXL1Rgq",
        "https://id.example.com/01/09506000134352/10/LOT7",
    )
    assert proc.returncode == 0, proc.stderr
    out = lines(proc.stdout)
    assert [(o["scheme"], o["canonical"], o["routing_key"]) for o in out] == [
        ("handle", "88.100.1/ABC-123", "handle:88.100.1"),
        ("gtin", "06901234567892", "gs1:6901234567892"),
        ("oid", "1.2.156.3001.1", "oid:1.2.156.3001.1"),
        ("did:bid", "did:bid:ab12:efGsChQR2U32pvwJcDNPoYHhGXL1Rgq", "bid:ab12"),
        ("gtin", "09506000134352", "gs1:9506000134352"),
    ]
    assert out[4]["qualifiers"] == {"10": "LOT7"}
    assert proc.stderr == b""


def test_an_invalid_identifier_exits_2_and_says_where_and_why() -> None:
    proc = run("parse", "88.100.1/OK", "06901234567891")
    assert proc.returncode == 2
    ok, bad = lines(proc.stdout)
    assert ok["canonical"] == "88.100.1/OK"
    assert bad["error"] == {
        "responseCode": 102,
        "position": 13,
        "reason": "wrong check digit 1, expected 2",
        "message": "invalid gtin identifier '06901234567891' at position 13: "
        "wrong check digit 1, expected 2",
    }
    err = proc.stderr.decode()
    assert "expected 2" in err
    assert "\n  06901234567891\n               ^" in err  # caret under the check digit
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("arg", "reason"),
    [
        (b"88.100.1/\xff\xfe", "not valid UTF-8"),
        ("1.02.3", "leading zero"),
        ("", "empty input"),
        ("x" * 100_000, "no identifier exceeds"),  # argv caps one argument at 128 KiB
        ("foo:bar", "unknown scheme"),
    ],
)
def test_bad_input_is_a_clean_error(arg: str | bytes, reason: str) -> None:
    proc = run("parse", arg)
    assert proc.returncode == 2
    (out,) = lines(proc.stdout)
    assert reason in str(out["error"])
    assert b"Traceback" not in proc.stderr


def test_usage_errors_exit_2_without_a_traceback() -> None:
    proc = run("parse")
    assert proc.returncode == 2
    assert b"usage:" in proc.stderr
    assert b"Traceback" not in proc.stderr


def test_stdin_mode_reads_one_identifier_a_line_even_a_megabyte_one() -> None:
    data = b"88.100.1/A\r\n" + b"9" * 1_000_000 + b"\n1.2.156\n\xff\n"
    proc = run("parse", "-", stdin=data)
    assert proc.returncode == 2
    out = lines(proc.stdout)
    assert out[0]["canonical"] == "88.100.1/A"
    assert "1000000 characters" in str(out[1]["error"])
    assert out[2]["canonical"] == "1.2.156"
    assert "not valid UTF-8" in str(out[3]["error"])
    assert len(proc.stdout) < 10_000  # the megabyte is not echoed back in full
