"""``deploy/setup.sh`` on a fresh checkout, as the first ``make up`` runs it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_a_fresh_setup_prints_its_steps_and_no_warning_box(tmp_path: Path) -> None:
    """Issue 16: setuptools' "Editable installation" box, which pip shows since 25.1,
    greeted every new operator. setup.sh says what it does, one line a step, and nothing
    else when all goes well (errors still show: only that message is filtered)."""
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    checkout = tmp_path / "idres"
    for name in filter(None, tracked):
        source = ROOT / name.decode()
        if source.is_file():  # a file deleted in the working tree is not copied
            (checkout / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, checkout / name.decode())

    done = subprocess.run(
        ["bash", "deploy/setup.sh"], cwd=checkout, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert "Editable installation" not in done.stderr
    steps = done.stderr.splitlines()
    edge = (
        "setup: building the node's edge (Go)"
        if shutil.which("go")
        else "setup: Go not found: nodes will serve without the compiled edge"
    )
    checker = (
        "setup: building verify's compiled checker (Rust)"
        if shutil.which("cargo")
        else "setup: cargo not found: idres verify will check in Python"
    )
    assert steps == [
        "setup: creating .venv",
        edge,
        checker,
        "setup: installing idres into .venv",
    ]
    assert done.stdout == ""
    version = subprocess.run(
        [str(checkout / ".venv/bin/idres"), "--version"], capture_output=True, text=True
    )
    assert version.stdout.startswith("idres "), version.stderr
