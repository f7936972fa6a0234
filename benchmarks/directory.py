"""What the directory costs a node as it grows: verifying it whole, adding a node,
and refusing a forged message, against the signature checks alone.

A directory of one super node, B backbones and S sub-chains under each, every
sub-chain with P prefixes; the reference, in the same run, is checking every
delegation's Ed25519 signature and nothing else (the least any verification must
do). A forged message on the directory topic (another node's name, a newer issue
time, a signature that does not verify) is what any Kafka client with write access
to the topic can send.

    python -m benchmarks.directory --backbones 10 --subs 200 --prefixes 9
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import ed25519

from benchmarks.registration import machine
from idres.assembly import node_public_key
from resolver.topology import Delegation, Directory, Role, sign_delegation
from sync.directory import LiveDirectory


def build(
    backbones: int, subs: int, prefixes: int
) -> tuple[list[Delegation], ed25519.Ed25519PrivateKey]:
    key = ed25519.Ed25519PrivateKey.generate()  # one key for all: signing is not measured
    der = node_public_key(key)

    def signed(name: str, role: Role, parent: str | None, px: tuple[str, ...]) -> Delegation:
        unsigned = Delegation(
            name=name, role=role, url="http://x", parent=parent, prefixes=px,
            public_key=der, issued=1,
        )  # fmt: skip
        return sign_delegation(unsigned, key)

    out = [signed("super", Role.SUPER, None, ("bid:",))]
    for b in range(backbones):
        out.append(signed(f"bb{b}", Role.BACKBONE, "super", (f"{100 + b}",)))
        for s in range(subs):
            px = tuple(f"{100 + b}.{s}.{p}" for p in range(prefixes))
            out.append(signed(f"s{b}-{s}", Role.SUBCHAIN, f"bb{b}", px))
    return out, key


def timed(f: Callable[[], object]) -> float:
    started = time.perf_counter()
    f()
    return time.perf_counter() - started


def run(backbones: int, subs: int, prefixes: int) -> dict[str, object]:
    delegations, key = build(backbones, subs, prefixes)
    anchor = node_public_key(key)
    by_name = {d.name: d for d in delegations}
    pub = key.public_key()

    def signatures() -> None:
        for d in delegations:
            pub.verify(d.signature, d.signed_bytes())

    reference = timed(signatures)
    directory = Directory(delegations, anchor)
    whole = timed(lambda: Directory(delegations, anchor))
    new = dataclasses.replace(
        by_name["s0-0"], name="new", prefixes=tuple(f"100.99999.{p}" for p in range(64))
    )
    new = sign_delegation(dataclasses.replace(new, signature=b""), key)
    adding = timed(lambda: directory.with_delegation(new))
    live = LiveDirectory(directory, anchor)
    victim = by_name[delegations[-1].name]
    forged = dataclasses.replace(victim, issued=5, signature=bytes(64))
    refusing = timed(lambda: live.adopt([forged]))
    nodes = len(delegations)
    return {
        "machine": machine(),
        "method": (
            f"1 super, {backbones} backbones, {subs} sub-chains each with {prefixes} "
            "prefixes; reference: every delegation's Ed25519 signature checked alone"
        ),
        "nodes": nodes,
        "prefixes": sum(len(d.prefixes) for d in delegations),
        "signatures_alone_s": reference,
        "verify_whole_s": whole,
        "verify_whole_vs_signatures": whole / reference,
        "add_a_node_of_64_prefixes_ms": 1000 * adding,
        "refuse_a_forged_replacement_ms": 1000 * refusing,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", type=int, default=10)
    parser.add_argument("--subs", type=int, default=200)
    parser.add_argument("--prefixes", type=int, default=9)
    args = parser.parse_args()
    print(json.dumps(run(args.backbones, args.subs, args.prefixes), indent=2))


if __name__ == "__main__":
    main()
