"""CNRI's own Handle client as a test helper: run HdlProbe through deploy/handle/client.sh.

``probe(...)`` / ``await aprobe(...)`` return the probe's exit status and its one JSON
object; the arguments are HdlProbe's, e.g. ``probe("resolve", "--tcp", host, port, handle)``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "deploy" / "handle" / "client.sh"

# HdlProbe's exit statuses; a usage error (1) raises ProbeError instead.
RESPONSE = 0  # a response arrived, whatever its responseCode
HANDLE_EXCEPTION = 2  # the library threw HandleException: {"exception": code, ...}
CRASH = 3  # the library failed to decode what the server sent: {"crash": class, ...}
REPORTED = (RESPONSE, HANDLE_EXCEPTION, CRASH)

# Fetching the jars (first run on a machine) and compiling the probe.
BUILD_WAIT = 600.0


class ProbeError(Exception):
    """The probe could not run, or was given bad arguments: no verdict on the server."""


@functools.cache
def ensure_client() -> None:
    """Fetch the client jars and compile the probe, once per test process."""
    try:
        done = subprocess.run(
            ["bash", str(CLIENT)],
            capture_output=True,
            text=True,
            timeout=BUILD_WAIT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ProbeError(f"{CLIENT} did not finish in {BUILD_WAIT:.0f} s") from exc
    if done.returncode != 0:
        raise ProbeError(f"{CLIENT} failed ({done.returncode}):\n{done.stderr}")


def probe(*args: str | int, timeout: float = 20) -> tuple[int, dict[str, Any]]:
    """Run HdlProbe with ``args``; return its exit status and its JSON object."""
    ensure_client()
    argv = _argv(args)
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ProbeError(f"no answer in {timeout} s from HdlProbe {' '.join(argv[3:])}") from exc
    return _verdict(argv, done.returncode, done.stdout, done.stderr)


async def aprobe(*args: str | int, wait: float = 20) -> tuple[int, dict[str, Any]]:
    """``probe`` for async tests: the event loop keeps serving while the client asks."""
    await asyncio.to_thread(ensure_client)
    argv = _argv(args)
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        async with asyncio.timeout(wait):
            out, err = await proc.communicate()
    except TimeoutError as exc:
        proc.kill()  # client.sh execs java, so this is the JVM itself
        await proc.wait()
        raise ProbeError(f"no answer in {wait} s from HdlProbe {' '.join(argv[3:])}") from exc
    assert proc.returncode is not None
    return _verdict(argv, proc.returncode, out, err)


def _argv(args: tuple[str | int, ...]) -> list[str]:
    return ["bash", str(CLIENT), "run", *(str(a) for a in args)]


def _verdict(argv: list[str], status: int, out: bytes, err: bytes) -> tuple[int, dict[str, Any]]:
    command = " ".join(argv[3:])
    if status not in REPORTED:
        raise ProbeError(f"HdlProbe {command} exited {status}:\n{err.decode(errors='replace')}")
    try:
        found = json.loads(out)
    except ValueError as exc:
        raise ProbeError(f"HdlProbe {command} printed no JSON: {out!r}") from exc
    if not isinstance(found, dict):
        raise ProbeError(f"HdlProbe {command} printed {found!r}, not an object")
    return status, found
