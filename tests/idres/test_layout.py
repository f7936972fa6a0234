"""``idres deploy``'s rules without processes: the description, requests, signing,
assembling, and the runbook's command lines and environment files."""

from __future__ import annotations

import json
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from idres.assembly import save_node_key
from idres.cli import main
from idres.layout import (
    LayoutError,
    anchor_text,
    assemble,
    layout_from,
    public_der,
    request_from,
    request_json,
    sign_request,
)
from idres.runbook import node_run

EXAMPLE = """
[network]
kafka = "kafka.example.net:9092"
kafka_passwords = "/etc/idres/kafka"

[[node]]
name = "super"
role = "super"
url = "https://super.example.net"
prefixes = ["bid:"]

[[node]]
name = "backbone-1"
role = "backbone"
parent = "super"
url = "http://10.0.0.2:8001"
prefixes = ["88", "gs1:6"]
database_url = "postgresql://idres:p w'd@db/idres"

[[node]]
name = "sub-a"
role = "subchain"
parent = "backbone-1"
url = "http://10.0.0.3:8000"
listen = "10.0.0.3:9000"
prefixes = ["88.100"]
data_dir = "/srv/idres"
"""


def example(**changes: dict[str, Any]) -> dict[str, Any]:
    """The example description, with fields of nodes (by name) changed; None drops one."""
    obj = tomllib.loads(EXAMPLE)
    for node in obj["node"]:
        for field, value in changes.get(node["name"], {}).items():
            if value is None:
                node.pop(field, None)
            else:
                node[field] = value
    return obj


def test_the_example_lays_out_with_defaults_from_the_url() -> None:
    layout = layout_from(example())
    assert [n.name for n in layout.nodes] == ["super", "backbone-1", "sub-a"]
    by = layout.by_name
    assert (by["super"].listen_host, by["super"].listen_port) == ("0.0.0.0", 443)
    assert by["backbone-1"].listen_port == 8001
    assert (by["sub-a"].listen_host, by["sub-a"].listen_port) == ("10.0.0.3", 9000)
    assert by["super"].data_dir == "/var/lib/idres/super"
    assert by["sub-a"].data_dir == "/srv/idres"


@pytest.mark.parametrize(
    ("changes", "problems"),
    [
        (
            # every mistake of a description at once, each with its place
            {
                "super": {"prefix": ["bid:"]},
                "backbone-1": {"role": "regional", "url": "ftp://x"},
                "sub-a": {"parent": "backbone-9"},
            },
            [
                ("node 'super'.prefix", "unknown field"),
                ("node 'backbone-1'.role", "must be super, backbone or subchain"),
                ("node 'backbone-1'.url", "must be http(s)://HOST[:PORT]"),
                ("node 'sub-a'.parent", "'backbone-9' names no node"),
            ],
        ),
        ({"sub-a": {"parent": None}}, [("node 'sub-a'.parent", "needs its parent's name")]),
        ({"sub-a": {"listen": "10.0.0.3"}}, [("node 'sub-a'.listen", "is not HOST:PORT")]),
        (
            {"sub-a": {"prefixes": ["86.1000"]}},
            [("hierarchy", "outside its own prefixes")],
        ),
        (
            {"sub-a": {"role": "backbone"}},
            [("hierarchy", "may delegate sub-chain nodes only")],
        ),
        ({"sub-a": {"prefixes": ["0.NA"]}}, [("hierarchy", "reserved")]),
        ({"backbone-1": {"role": "super", "parent": None}}, [("node", "exactly one super")]),
    ],
)
def test_a_description_that_does_not_fit_says_where(
    changes: dict[str, dict[str, Any]], problems: list[tuple[str, str]]
) -> None:
    with pytest.raises(LayoutError) as caught:
        layout_from(example(**changes))
    assert len(caught.value.problems) == len(problems), caught.value.problems
    for (where, what), (want_where, want_what) in zip(caught.value.problems, problems, strict=True):
        assert where == want_where
        assert want_what in what


KEYS = {name: ed25519.Ed25519PrivateKey.generate() for name in ("super", "backbone-1", "sub-a")}


def signed_all() -> list[Any]:
    layout = layout_from(example())
    out = []
    for name, parent in (("super", "super"), ("backbone-1", "super"), ("sub-a", "backbone-1")):
        request = request_from(request_json(layout.node(name), public_der(KEYS[name])))
        out.append(sign_request(layout, request, KEYS[parent], issued=1))
    return out


def test_requests_signed_by_each_parent_assemble_into_a_directory() -> None:
    layout = layout_from(example())
    directory = assemble(layout, list(reversed(signed_all())))
    assert [d.name for d in directory] == ["super", "backbone-1", "sub-a"]
    assert directory[2].public_key == public_der(KEYS["sub-a"])


@pytest.mark.parametrize(
    ("node", "signer", "edit", "parent", "problem"),
    [
        ("sub-a", "backbone-1", {"prefixes": ["88"]}, None, "but the layout says ('88.100',)"),
        ("sub-a", "sub-a", {}, None, "own key; its parent 'backbone-1' signs"),
        ("super", "backbone-1", {}, None, "signs its own delegation"),
        ("sub-a", "super", {}, 1, "not the key of 'backbone-1'"),
        ("sub-a", "backbone-1", {}, 0, "'super' is not 'sub-a''s parent"),
        ("sub-a", "super", {"name": "nobody"}, None, "no node of that name"),
    ],
)
def test_a_parent_signs_only_what_the_layout_gives_with_its_own_key(
    node: str, signer: str, edit: dict[str, Any], parent: int | None, problem: str
) -> None:
    layout = layout_from(example())
    obj = {**request_json(layout.node(node), public_der(KEYS[node])), **edit}
    with pytest.raises(LayoutError) as caught:
        sign_request(
            layout,
            request_from(obj),
            KEYS[signer],
            issued=1,
            parent=signed_all()[parent] if parent is not None else None,
        )
    assert problem in str(caught.value)


def test_assembling_refuses_a_forged_missing_or_doubled_delegation() -> None:
    layout = layout_from(example())
    good = signed_all()
    with pytest.raises(LayoutError, match="no signed delegation of sub-a"):
        assemble(layout, good[:2])
    with pytest.raises(LayoutError, match="given twice"):
        assemble(layout, [*good, good[2]])
    other = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(LayoutError, match="super node's key in the directory is not the trusted"):
        assemble(layout, good, trust_anchor=public_der(other))
    request = request_from(request_json(layout.node("sub-a"), public_der(KEYS["sub-a"])))
    forged = sign_request(layout, request, other, issued=1)  # no --parent: not caught here
    with pytest.raises(LayoutError, match="not signed by 'backbone-1'"):
        assemble(layout, [*good[:2], forged])


def test_the_printed_command_and_the_env_file_give_back_every_value() -> None:
    layout = layout_from(example())
    anchor = anchor_text(public_der(KEYS["super"]))
    run = node_run(layout, layout.node("backbone-1"), anchor)
    words = shlex.split(run.command("/opt/idres/bin/idres"))
    assert words[:3] == [
        "DATABASE_URL=postgresql://idres:p w'd@db/idres",
        "KAFKA_BOOTSTRAP=kafka.example.net:9092",
        "KAFKA_SASL_USERNAME=backbone-1",
    ]
    assert words[3:5] == ["/opt/idres/bin/idres", "serve"]
    assert words[words.index("--kafka-password-file") + 1] == "/etc/idres/kafka/backbone-1.password"
    assert words[words.index("--port") + 1] == "8001"
    assert run.env_file().splitlines()[1] == 'DATABASE_URL="postgresql://idres:p w\'d@db/idres"'
    assert f"IDRES_SERVE_ARGS={' '.join(words[5:])}" in run.env_file()


def test_plan_takes_a_key_it_is_given_and_makes_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "network.toml").write_text(EXAMPLE)
    save_node_key(tmp_path / "mine.pem", KEYS["super"])
    argv = ["deploy", "plan", str(tmp_path / "network.toml"), "--out", str(tmp_path / "out")]
    assert main([*argv, "--key", f"super={tmp_path / 'mine.pem'}"]) == 0
    printed = capsys.readouterr().out
    directory = json.loads((tmp_path / "out" / "nodes.json").read_text())
    anchor = anchor_text(public_der(KEYS["super"]))
    assert directory[0]["publicKey"] == anchor
    assert (
        f"trust anchor (the super node's key; every node and client is given it): {anchor}"
        in printed
    )
    assert (tmp_path / "out" / "sub-a" / "node.pem").stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "out" / "super").exists()
    # again: the keys made the first time are taken, so the directory names the same ones
    assert main([*argv, "--key", f"super={tmp_path / 'mine.pem'}"]) == 0
    again = json.loads((tmp_path / "out" / "nodes.json").read_text())
    assert [d["publicKey"] for d in again] == [d["publicKey"] for d in directory]


def test_a_bad_description_exits_2_with_each_problem_on_a_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "network.json").write_text(
        json.dumps(example(**{"sub-a": {"url": 7, "role": "x"}}))
    )
    assert main(["deploy", "request", str(tmp_path / "network.json"), "--node", "sub-a"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "idres deploy request: node 'sub-a'.role: must be super, backbone or subchain",
        "idres deploy request: node 'sub-a'.url: must be a non-empty string",
    ]


def test_sign_finds_the_parent_in_a_nodes_json_and_checks_the_key_against_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = layout_from(example())
    (tmp_path / "network.toml").write_text(EXAMPLE)
    (tmp_path / "nodes.json").write_text(json.dumps([d.to_json() for d in signed_all()]))
    request = request_json(layout.node("sub-a"), public_der(ed25519.Ed25519PrivateKey.generate()))
    (tmp_path / "request.json").write_text(json.dumps(request))
    for name in ("super", "backbone-1"):
        save_node_key(tmp_path / f"{name}.pem", KEYS[name])
    argv = ["deploy", "sign", str(tmp_path / "network.toml"), str(tmp_path / "request.json")]
    argv += ["--parent", str(tmp_path / "nodes.json"), "--key"]
    assert main([*argv, str(tmp_path / "super.pem")]) == 2
    assert "not the key of 'backbone-1'" in capsys.readouterr().err
    assert main([*argv, str(tmp_path / "backbone-1.pem")]) == 0
    signed = json.loads(capsys.readouterr().out)
    assert (signed["name"], signed["publicKey"]) == ("sub-a", request["publicKey"])
