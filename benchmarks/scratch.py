"""A benchmark's working folder, removed when the process exits.

Removed at exit, not in the benchmark's ``finally``: the embedded PostgreSQL a
benchmark starts stops at exit too (``registry.database.start_embedded``), and a
server whose folder is deleted under it runs on until it notices its lock file gone,
a minute or two later. ``atexit`` runs last what was registered first, so a folder
made before its server is removed after the server stopped.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path


def scratch(prefix: str) -> Path:
    """A new folder under the system's temporary one; call it before starting servers."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    return work
