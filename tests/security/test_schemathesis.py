"""schemathesis over the node's own /openapi.json with all its checks: no 5xx, and the
description and the server agree (statuses, content types, headers, Allow, schema-valid
requests accepted and invalid ones refused), so that clients generated from it work.

A short run (SCHEMATHESIS_MAX_EXAMPLES per operation, 25 by default, seed 11) against a
real node of the test network over real PostgreSQL. A longer run: see README "Fuzzing
the HTTP API", e.g. ``SCHEMATHESIS_MAX_EXAMPLES=2000 pytest tests/security/test_schemathesis.py``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.resolver.conftest import LAYOUT, Net

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio]
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "25"))
SEED = os.environ.get("SCHEMATHESIS_SEED", "11")
ROOT = Path(__file__).resolve().parents[2]
HELD_BY_SUB = next(prefixes for name, _, _, prefixes in LAYOUT if name == "sub")


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("schemathesis")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("schemathesis")
    if found is None:
        # the test command installs it ([dev]): its absence is a broken setup, not a skip
        pytest.fail("schemathesis is not installed (pip install -e '.[dev]')")
    return [found]


async def test_the_server_answers_as_its_openapi_document_says(net: Net, tmp_path: Path) -> None:
    url = net.urls["sub"]  # holds 88.100: its registry and resolver answer
    proc = await asyncio.create_subprocess_exec(
        *_cli(),
        "run",
        f"{url}/openapi.json",
        # all of them, none excluded (the fuzzer signs nothing: ignored_auth sees every
        # write refused 401, and the writes' other checks see their refusals)
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        SEED,
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--no-color",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={
            **os.environ,
            # positive cases skip identifiers refused for what no pattern states, and
            # writes of identifiers this node does not hold (tests/security/
            # schemathesis_hooks.py)
            "SCHEMATHESIS_HOOKS": "tests.security.schemathesis_hooks",
            "IDRES_SCHEMATHESIS_PREFIXES": ",".join(HELD_BY_SUB),
            "PYTHONPATH": str(ROOT),
            "HOME": str(tmp_path),
        },
        cwd=tmp_path,
    )
    out, _ = await proc.communicate()
    report = out.decode("utf-8", "replace")
    assert proc.returncode == 0, report[-6000:]
    print(report[-3000:])
    assert "passed" in report
