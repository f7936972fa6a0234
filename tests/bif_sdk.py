"""BIF's own Java SDK as a test helper: run BifProbe through deploy/bif/sdk.sh.

``sdk(...)`` returns BifProbe's one JSON object, e.g. ``sdk("keygen", 5)``; the first
call fetches the jars (once a machine) and compiles the probe.
"""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SDK = ROOT / "deploy" / "bif" / "sdk.sh"
BUILD_WAIT = 600.0


@functools.cache
def ensure_sdk() -> None:
    done = subprocess.run(
        ["bash", str(SDK)], capture_output=True, text=True, timeout=BUILD_WAIT, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{SDK} failed ({done.returncode}):\n{done.stderr}")


def sdk(*args: str | int, timeout: float = 60) -> dict[str, Any]:
    ensure_sdk()
    done = subprocess.run(
        ["bash", str(SDK), "run", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"BifProbe {args} failed ({done.returncode}): {done.stdout}{done.stderr}"
        )
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer
