"""A GS1-conformant resolver behind the compiled edge: ``idres serve`` as operators run
it, where the edge forwards Digital Link requests (HEAD and OPTIONS too) to the
workers and must pass their status and headers through unchanged."""

from __future__ import annotations

import http.client
import signal
import subprocess
from pathlib import Path

import pytest

from tests.idres.test_one_port import RUN, _addr, _serve, _serving

pytestmark = [pytest.mark.postgres]
GTIN = "06901234567892"


def _ask(url: str, method: str, path: str, **headers: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(*_addr(url), timeout=10)
    conn.request(method, path, headers=headers)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp


def test_digital_link_answers_pass_the_edge_with_their_headers(db_url: str, tmp_path: Path) -> None:
    proc, admin = _serve(db_url, tmp_path, 1, "--prefix", "gs1:690")
    try:
        url = _serving(proc)
        done = subprocess.run(
            [
                *RUN,
                *("register", GTIN, "--server", url),
                *("--value", "gs1:defaultLink=https://example.com/tea"),
                *("--value", "gs1:pip:en=https://example.com/pip/en"),
                *("--value", "gs1:pip:fr=https://example.com/pip/fr"),
                *("--key", str(admin), "--key-id", "300:0.NA/node.admin"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        path = f"/01/{GTIN}/10/LOT7"
        for method in ("GET", "HEAD"):
            resp = _ask(url, method, path + "?foo=bar")
            assert (resp.status, resp.headers["Location"]) == (
                307,
                "https://example.com/tea?foo=bar",
            )
            assert resp.headers["Access-Control-Allow-Origin"] == "*"
            assert 'rel="linkset"' in resp.headers["Link"]
        resp = _ask(url, "OPTIONS", path)
        assert (resp.status, resp.headers["Access-Control-Allow-Methods"]) == (
            204,
            "GET, HEAD, OPTIONS",
        )
        resp = _ask(url, "GET", f"/01/{GTIN}?linkType=gs1:pip", **{"Accept-Language": "fr"})
        assert (resp.status, resp.headers["Location"]) == (
            307,
            "https://example.com/pip/fr?linkType=gs1:pip",
        )
        assert _ask(url, "GET", f"/01/{GTIN}?linkType=gs1:pip").status == 300
        assert _ask(url, "GET", "/.well-known/gs1resolver").status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err
