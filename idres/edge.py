"""The node's edge (``resolver/edge``): where its binary is, and how it starts.

The edge is compiled (Go): on one core it answers cached reads at the rate nginx
serves files, where a Python event loop reached 0.6x (benchmarks/RESULTS.md, issue
12). ``deploy/setup.sh`` builds it into the virtualenv beside ``idres``; a node whose
binary is missing serves with the workers' own front doors and says so.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

BINARY = "idres-edge"
SOCKET = "w.sock"
DNS_SOCKET = "d.sock"  # the DNS queries the edge passes on (resolver/edge/dns.go)
HANDLE_SOCKET = "h.sock"  # the Handle requests it passes on (resolver/edge/handle.go)


def binary() -> Path | None:
    """The edge's executable: ``IDRES_EDGE_BINARY``, else beside this Python's."""
    named = os.environ.get("IDRES_EDGE_BINARY")
    path = Path(named) if named else Path(sys.executable).parent / BINARY
    return path if path.is_file() and os.access(path, os.X_OK) else None


@dataclass(frozen=True, slots=True)
class Front:
    """An edge started in front of a node: its process, and the socket its workers
    accept on (in a folder of its own)."""

    process: subprocess.Popen[bytes]
    workers: socket.socket
    path: Path
    # where the workers hear the DNS queries the edge passes on (None: no DNS face)
    dns: socket.socket | None = None
    # where they hear the Handle requests over TCP it passes on (None: no Handle face)
    handle: socket.socket | None = None

    def remove(self) -> None:
        """The workers' sockets and their folder, once the node has stopped."""
        self.workers.close()
        for forwards in (self.dns, self.handle):
            if forwards is not None:
                forwards.close()
        shutil.rmtree(self.path.parent, ignore_errors=True)


def put_in_front(
    executable: Path,
    public: socket.socket,
    *,
    database_url: str,
    name: str,
    max_entries: int,
    dns: socket.socket | None = None,
    handle: socket.socket | None = None,
    tls: tuple[Path, Path] | None = None,
) -> Front:
    """Start the edge on the node's bound ``public`` socket, which it holds from now
    (closed here), in front of a new socket for the node's workers; and on ``dns``, the
    DNS face's bound UDP socket, and ``handle``, the Handle face's listening TCP
    socket, when given (closed here too), each in front of a listening socket of the
    workers' (``Front.dns``, ``Front.handle``). With ``tls`` (certificate chain and
    key, PEM files) the edge serves HTTPS on the port."""
    inner, path = _workers_socket()
    dns_forwards = None if dns is None else _forwards(path.parent / DNS_SOCKET)
    handle_forwards = None if handle is None else _forwards(path.parent / HANDLE_SOCKET)
    process = _start(
        executable,
        public,
        path,
        database_url=database_url,
        name=name,
        max_entries=max_entries,
        dns=dns,
        handle=handle,
        tls=tls,
    )
    for held in (public, dns, handle):
        if held is not None:
            held.close()
    return Front(process, inner, path, dns_forwards, handle_forwards)


def _forwards(path: Path) -> socket.socket:
    """A listening unix socket where the workers hear what the edge passes on for one
    of the node's other faces (resolver/edge/forward.go: it dials a few)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(64)
    sock.setblocking(False)
    return sock


def _workers_socket() -> tuple[socket.socket, Path]:
    """A listening unix socket for the workers, in a fresh directory only this user
    reaches (mode 0700): whatever connects is the edge, so the client address it names
    can be believed. A short path: a unix socket's is at most 107 bytes."""
    folder = Path(tempfile.mkdtemp(prefix="idres-"))
    path = folder / SOCKET
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(1024)
    return sock, path


def _start(
    executable: Path,
    public: socket.socket,
    workers: Path,
    *,
    database_url: str,
    name: str,
    max_entries: int,
    dns: socket.socket | None,
    handle: socket.socket | None,
    tls: tuple[Path, Path] | None,
) -> subprocess.Popen[bytes]:
    """Start the edge on the node's bound socket (inherited), in front of ``workers``.
    The database URL goes in the environment, not on a command line ``ps`` shows."""
    fd = public.fileno()
    args = [
        str(executable),
        "-fd",
        str(fd),
        "-backend",
        str(workers),
        "-name",
        name,
        "-max-entries",
        str(max_entries),
    ]
    fds = [fd]
    if dns is not None:
        fds.append(dns.fileno())
        args += ["-dns-fd", str(dns.fileno()), "-dns-backend", str(workers.parent / DNS_SOCKET)]
        args += ["-dns-max-entries", str(max_entries)]
    if handle is not None:
        fds.append(handle.fileno())
        args += [
            "-handle-fd",
            str(handle.fileno()),
            "-handle-backend",
            str(workers.parent / HANDLE_SOCKET),
        ]
    if tls is not None:
        args += ["-tls-cert", str(tls[0]), "-tls-key", str(tls[1])]
    return subprocess.Popen(
        args,
        pass_fds=tuple(fds),
        env={**os.environ, "IDRES_EDGE_DATABASE": database_url},
        stdin=subprocess.DEVNULL,
    )
