"""``idres deploy``: lay out a hierarchy from a description, sign its delegations where
each parent's key is, assemble ``nodes.json``, and print what to run where.

The files are read and written here; the rules are in ``idres.layout`` and the
runbook in ``idres.runbook``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from idres.assembly import load_node_key
from idres.keyfiles import write_secret
from idres.layout import (
    Layout,
    LayoutError,
    anchor_from,
    anchor_text,
    assemble,
    delegation_from,
    layout_from,
    public_der,
    request_from,
    request_json,
    sign_request,
)
from idres.runbook import node_run, render
from resolver.topology import Delegation

EXIT_OK = 0
EXIT_INVALID = 2


def _read(path: Path) -> Any:
    """A TOML (``.toml``) or JSON file, parsed; ``LayoutError`` naming the file if not."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LayoutError([(str(path), exc.strerror or str(exc))]) from exc
    try:
        return tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise LayoutError([(str(path), str(exc))]) from exc


def load_layout(path: Path) -> Layout:
    return layout_from(_read(path))


def _key(path: Path) -> ed25519.Ed25519PrivateKey:
    """A node's key: the file's, or a new one written there (mode 600)."""
    try:
        return load_node_key(path)
    except ValueError as exc:
        raise LayoutError([(str(path), f"not a PEM private key: {exc}")]) from exc


def _write_json(obj: Any, out: str | None) -> None:
    text = json.dumps(obj, indent=2) + "\n"
    if out is None:
        sys.stdout.write(text)
    else:
        Path(out).write_text(text)


def _delegations(paths: list[str]) -> list[Delegation]:
    """Signed delegations from files of one each (``sign``'s) or of a list (a
    ``nodes.json``)."""
    found = []
    for path in paths:
        obj = _read(Path(path))
        for i, item in enumerate(obj if isinstance(obj, list) else [obj]):
            found.append(delegation_from(item, f"{path}[{i}]" if isinstance(obj, list) else path))
    return found


def _write_out(layout: Layout, directory: list[Delegation], out: Path) -> str:
    """``nodes.json`` and each node's environment file in ``out``; the runbook."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "nodes.json").write_text(json.dumps([d.to_json() for d in directory], indent=2) + "\n")
    anchor = anchor_text(directory[0].public_key)
    for node in layout.nodes:
        # mode 600: DATABASE_URL may hold a password
        env = node_run(layout, node, anchor).env_file().encode()
        write_secret(out / f"{node.name}.env", env, replace=True)
    return (
        f"idres deploy: wrote {out / 'nodes.json'} ({len(directory)} signed delegations) and "
        f"NAME.env for each node\n\n" + render(layout, anchor)
    )


def _cmd_plan(args: argparse.Namespace) -> int:
    """One operator holds every key: make or take each, sign every delegation."""
    layout = load_layout(Path(args.layout))
    out = Path(args.out)
    given: dict[str, Path] = {}
    for item in args.key or ():
        name, sep, path = item.partition("=")
        if not sep:
            raise LayoutError([("--key", f"{item!r}: write NAME=FILE")])
        layout.node(name)
        given[name] = Path(path)
    keys = {n.name: _key(given.get(n.name, out / n.name / "node.pem")) for n in layout.nodes}
    issued = int(time.time())
    signed = [
        sign_request(
            layout,
            n.unsigned(public_der(keys[n.name])),
            keys[n.parent or n.name],
            issued=issued,
        )
        for n in layout.nodes
    ]
    directory = assemble(layout, signed)
    print(_write_out(layout, directory, out))
    print(
        f"\nkeys: {out}/NAME/node.pem (or as --key gave them): copy each to its node's "
        "data dir, and to nowhere else"
    )
    return EXIT_OK


def _cmd_request(args: argparse.Namespace) -> int:
    """On a node's machine: its key (made if missing) and what its parent is to sign."""
    layout = load_layout(Path(args.layout))
    node = layout.node(args.node)
    path = Path(args.key) if args.key else Path(node.data_dir) / "node.pem"
    key = _key(path)
    _write_json(request_json(node, public_der(key)), args.out)
    target = f"{args.out}" if args.out else "the request above"
    who = (
        f"the operator of {node.parent!r}"
        if node.parent
        else "yourself (the super node signs its own)"
    )
    print(f"idres deploy: key {path}; send {target} to {who}", file=sys.stderr)
    return EXIT_OK


def _cmd_sign(args: argparse.Namespace) -> int:
    """On the parent's machine, with its key alone: the child's signed delegation."""
    layout = load_layout(Path(args.layout))
    request = request_from(_read(Path(args.request)))
    parent = None
    if args.parent:  # one delegation, or a list such as nodes.json: the parent's in it
        want = layout.node(request.name).parent
        found = [d for d in _delegations([args.parent]) if d.name == want]
        if not found:
            raise LayoutError([("--parent", f"{args.parent} holds no delegation of {want!r}")])
        parent = found[0]
    signed = sign_request(
        layout, request, _key(Path(args.key)), issued=int(time.time()), parent=parent
    )
    _write_json(signed.to_json(), args.out)
    return EXIT_OK


def _cmd_assemble(args: argparse.Namespace) -> int:
    layout = load_layout(Path(args.layout))
    anchor = anchor_from(args.trust_anchor) if args.trust_anchor else None
    directory = assemble(layout, _delegations(args.delegations), trust_anchor=anchor)
    print(_write_out(layout, directory, Path(args.out)))
    if anchor is None:
        print(
            "\nno --trust-anchor given: the super node's key was taken from its delegation; "
            "check it with the super node's operator",
            file=sys.stderr,
        )
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    try:
        status: int = args.deploy(args)
    except LayoutError as exc:
        for where, what in exc.problems:
            print(f"idres deploy {args.step}: {where}: {what}", file=sys.stderr)
        return EXIT_INVALID
    return status


def add_parser(sub: Any) -> None:
    """``idres deploy`` and its steps, on the ``idres`` command's subparsers."""
    p = sub.add_parser(
        "deploy",
        help="lay out a hierarchy across machines: keys, signed nodes.json, what to run where",
        description="Read a description of the hierarchy (TOML or JSON: README, "
        "'Deploying across machines'). 'plan' does everything where one operator holds "
        "every key; otherwise each node runs 'request', each parent 'sign' with its own "
        "key, and anyone 'assemble'.",
    )
    p.set_defaults(func=_run)
    steps = p.add_subparsers(dest="step", required=True)

    s = steps.add_parser("plan", help="make or take every key, sign all, write nodes.json")
    s.add_argument("layout", help="the description (.toml or .json)")
    s.add_argument(
        "--out", required=True, metavar="DIR", help="nodes.json, NAME.env, NAME/node.pem"
    )
    s.add_argument(
        "--key", action="append", metavar="NAME=FILE", help="take NAME's key from FILE (repeatable)"
    )
    s.set_defaults(deploy=_cmd_plan)

    s = steps.add_parser("request", help="on a node's machine: its key and its request")
    s.add_argument("layout")
    s.add_argument("--node", required=True, help="this node's name in the layout")
    s.add_argument("--key", help="the node's key (default DATA_DIR/node.pem; made if missing)")
    s.add_argument("--out", help="write the request here (default: stdout)")
    s.set_defaults(deploy=_cmd_request)

    s = steps.add_parser("sign", help="on the parent's machine: sign a child's request")
    s.add_argument("layout")
    s.add_argument("request", help="the child's request (idres deploy request)")
    s.add_argument(
        "--key", required=True, help="the parent's node key (the child's own, for super)"
    )
    s.add_argument(
        "--parent",
        metavar="FILE",
        help="the parent's own signed delegation (or a nodes.json holding it): check that "
        "the key is the one it names and that the child keeps the rules toward it",
    )
    s.add_argument("--out", help="write the signed delegation here (default: stdout)")
    s.set_defaults(deploy=_cmd_sign)

    s = steps.add_parser("assemble", help="check every signed delegation, write nodes.json")
    s.add_argument("layout")
    s.add_argument("delegations", nargs="+", metavar="FILE", help="signed delegations")
    s.add_argument("--out", required=True, metavar="DIR", help="nodes.json and NAME.env here")
    s.add_argument("--trust-anchor", help="base64 DER of the super node's key, to check against")
    s.set_defaults(deploy=_cmd_assemble)
