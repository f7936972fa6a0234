"""The deploy/ files, checked with what runs without a container engine or a cluster:
systemd's own ``systemd-analyze verify`` for the unit; ``deploy/check`` (Go: compose-go,
the loader of Docker Compose, and strict decoding into k8s.io/api's types) for the
compose file and the Kubernetes manifests; and that each fits what ``idres deploy``
writes for the descriptions beside them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from idres.layout import layout_from

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
IDRES = Path(sys.executable).with_name("idres")


@pytest.fixture(scope="module")
def check(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/check, built (its modules from the Go proxy the first time)."""
    if shutil.which("go") is None:
        pytest.skip("Go is not installed: deploy/check cannot be built")
    out = tmp_path_factory.mktemp("check") / "check"
    built = subprocess.run(
        ["go", "build", "-o", str(out), "."],
        cwd=DEPLOY / "check",
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "CGO_ENABLED": "0"},
    )
    assert built.returncode == 0, built.stderr
    return out


def run_check(check: Path, kind: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(check), kind, str(path)], capture_output=True, text=True, timeout=60)


def laid_out(tmp_path: Path, name: str) -> Path:
    copy = tmp_path / name
    shutil.copytree(DEPLOY / name, copy)
    done = subprocess.run(
        [str(IDRES), "deploy", "plan", "network.toml", "--out", "out"],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return copy


def test_the_systemd_unit_verifies_and_reads_what_idres_deploy_writes(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    text = (DEPLOY / "systemd" / "idres@.service").read_text()
    assert "EnvironmentFile=/etc/idres/%i.env" in text
    assert "ExecStart=/opt/idres/.venv/bin/idres serve $IDRES_SERVE_ARGS" in text
    assert "StateDirectory=idres/%i" in text  # the description's default data_dir
    (default,) = layout_from({"node": [{"name": "n", "role": "super", "url": "http://h"}]}).nodes
    assert default.data_dir == "/var/lib/idres/n"
    # verify wants the command to exist: this checkout's, in a copy of the unit
    (tmp_path / "idres@.service").write_text(text.replace("/opt/idres/.venv/bin/idres", str(IDRES)))
    (tmp_path / "idres@sub-a.service").symlink_to("idres@.service")
    done = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "idres@sub-a.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # verify exits 0 on unknown keys and bad values too: it only prints them
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_the_compose_file_loads_as_docker_compose_loads_it(check: Path, tmp_path: Path) -> None:
    copy = laid_out(tmp_path, "compose")
    done = run_check(check, "compose", copy / "compose.yaml")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    layout = layout_from(tomllib.loads((copy / "network.toml").read_text()))
    nodes = [n.name for n in layout.nodes]
    assert summary["services"] == sorted(["postgres", "kafka", *nodes])
    compose = yaml.safe_load((copy / "compose.yaml").read_text())
    init = (copy / "postgres-init.sql").read_text()
    for node in layout.nodes:
        service = compose["services"][node.name]
        assert service["env_file"] == f"out/{node.name}.env"
        assert f"./out/{node.name}:{node.data_dir}" in service["volumes"]
        assert f"./out/nodes.json:{layout.directory}:ro" in service["volumes"]
        assert node.url == f"http://{node.name}:{node.listen_port}"
        assert node.database_url is not None
        assert f"CREATE DATABASE {node.database_url.rsplit('/', 1)[1]} " in init


def test_the_kubernetes_manifests_decode_strictly_and_fit_the_layout(
    check: Path, tmp_path: Path
) -> None:
    manifest = DEPLOY / "kubernetes" / "idres.yaml"
    done = run_check(check, "kubernetes", manifest)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    layout = layout_from(tomllib.loads((DEPLOY / "kubernetes" / "network.toml").read_text()))
    nodes = [n.name for n in layout.nodes]
    for name in nodes:
        assert f"Deployment/{name}" in summary["objects"]
        assert f"Service/{name}" in summary["objects"]
        assert layout.by_name[name].url == f"http://{name}.idres.svc:8000"
    # what the file uses and does not make is what its header says to create
    assert summary["external"] == sorted(
        ["ConfigMap/idres-directory", "Secret/postgres"]
        + [f"ConfigMap/idres-{n}-env" for n in nodes]
        + [f"Secret/idres-{n}" for n in nodes]
    )
    header = manifest.read_text().split("\n---", 1)[0]
    assert "create configmap idres-directory" in header
    assert "create secret generic postgres" in header
    assert re.search(r"for n in (.*); do", header).group(1).split() == nodes  # type: ignore[union-attr]
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(manifest.read_text())}
    init = docs[("ConfigMap", "postgres-init")]["data"]["10-idres.sql"]
    for name in nodes:
        pod = docs[("Deployment", name)]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env: dict[str, Any] = {e["name"]: e.get("value") for e in container["env"]}
        database = env["DATABASE_URL"].rsplit("/", 1)[1]
        assert f"CREATE DATABASE {database} " in init
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert layout.by_name[name].data_dir in mounts
        assert str(Path(layout.directory).parent) in mounts
    # the env files idres deploy writes are what the ConfigMaps are made from
    copy = laid_out(tmp_path, "kubernetes")
    assert (copy / "out" / "super.env").read_text().count("IDRES_SERVE_ARGS=") == 1


@pytest.mark.parametrize(
    ("kind", "file", "change", "message"),
    [
        (
            "kubernetes",
            "kubernetes/idres.yaml",
            ("readOnlyRootFilesystem", "readOnlyRootFileSystem"),
            'unknown field "spec.template.spec.containers[0].securityContext.readOnlyRootFileS',
        ),
        ("kubernetes", "kubernetes/idres.yaml", ("targetPort: http", "targetPort: htp"), "htp"),
        ("kubernetes", "kubernetes/idres.yaml", ("replicas: 1", "replicas: one"), "replicas"),
        (
            "compose",
            "compose/compose.yaml",
            ("condition: service_healthy", "condition: healthy"),
            "condition value must be one of",
        ),
        ("compose", "compose/compose.yaml", ("restart: unless", "restrat: unless"), "restrat"),
    ],
)
def test_the_checks_catch_a_mistake(
    check: Path, tmp_path: Path, kind: str, file: str, change: tuple[str, str], message: str
) -> None:
    folder = laid_out(tmp_path, file.split("/")[0])
    path = folder / Path(file).name
    path.write_text(path.read_text().replace(*change))
    done = run_check(check, kind, path)
    assert done.returncode == 1
    assert message in done.stderr


def test_the_dockerfile_copies_what_the_package_needs() -> None:
    """No engine here to build it: at least every COPY source exists, every package
    pyproject installs is copied, and the Go image is new enough for the edge."""
    text = (DEPLOY / "Dockerfile").read_text()
    sources = [
        line.split()[1:-1]
        for line in text.splitlines()
        if line.startswith("COPY ") and "--from=" not in line
    ]
    for words in sources:
        for source in words:
            assert (ROOT / source).exists(), source
    copied = {s.rstrip("/") for words in sources for s in words}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for package in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        assert package.rstrip("*") in copied
    want = re.search(r"^go (\d+\.\d+)", (ROOT / "resolver/edge/go.mod").read_text(), re.M)
    have = re.search(r"^FROM golang:(\d+\.\d+)", text, re.M)
    assert want is not None
    assert have is not None
    assert tuple(map(int, have.group(1).split("."))) >= tuple(map(int, want.group(1).split(".")))
