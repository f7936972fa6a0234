"""``idres serve --fast-port``: the lean listener under uvloop, beside the API port."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.postgres]


def test_idres_serve_runs_the_fast_path_on_its_own_port(db_url: str, tmp_path: Path) -> None:
    """Under uvloop, as a real node runs it, beside the API port."""
    admin = tmp_path / "admin.pem"
    run = [sys.executable, "-m", "idres"]
    assert subprocess.run([*run, "keygen", "--out", str(admin)], check=False).returncode == 0
    proc = subprocess.Popen(
        [
            *run,
            "serve",
            "--port",
            "0",
            "--fast-port",
            "0",
            "--prefix",
            "88.100",
            "--admin-key",
            str(admin),
        ],
        env={**os.environ, "DATABASE_URL": db_url, "IDRES_DATA_DIR": str(tmp_path / "d")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        fast = re.search(r"fast path on (http://\S+)/api/handles", lines[0])
        api = re.search(r"serving (http://\S+) ", lines[1])
        assert fast is not None, lines
        assert api is not None, lines
        registered = subprocess.run(
            [
                *run,
                "register",
                "88.100.1/FASTER",
                "--url",
                "https://e.x/f",
                "--server",
                api.group(1),
                "--key",
                str(admin),
                "--key-id",
                "300:0.NA/node.admin",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert registered.returncode == 0, registered.stderr
        with urllib.request.urlopen(fast.group(1) + "/api/handles/88.100.1/FASTER") as resp:
            body = json.loads(resp.read())
        assert body["values"][0]["data"]["value"] == "https://e.x/f"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err, err
