"""The benchmark's dataset: valid identifiers of every scheme, each placed at the
node the layout delegates its prefix to, and requests with the promised mix."""

from __future__ import annotations

from collections import Counter

from cryptography.hazmat.primitives.asymmetric import ed25519

from benchmarks import dataset
from idres.assembly import NodeSpec, delegations
from idres.network import LAYOUT
from resolver.topology import Directory
from schemas.identifiers import parse


def _directory() -> Directory:
    keys = {name: ed25519.Ed25519PrivateKey.generate() for name, *_ in LAYOUT}
    specs = [
        NodeSpec(name=n, role=r, parent=p, url=f"http://127.0.0.1:{8000 + o}", prefixes=x)
        for n, r, p, o, x in LAYOUT
    ]
    signed = delegations(specs, keys)
    return Directory(signed, trust_anchor=signed[0].public_key)


def test_every_identifier_is_valid_and_lives_where_its_prefix_is_delegated() -> None:
    directory = _directory()
    schemes: Counter[str] = Counter()
    for n in range(0, 20_000, 7):
        owner, text = dataset.owner_and_id(n)
        ident = parse(text)  # raises on an invalid identifier
        schemes[str(ident.scheme)] += 1
        found = directory.authority(ident.routing)
        assert found is not None, text
        assert found[1].name == owner, (text, found[1].name)
    share = {s: round(c / sum(schemes.values()), 2) for s, c in schemes.items()}
    assert share == {"handle": 0.85, "gtin": 0.1, "oid": 0.04, "did:bid": 0.01}


def test_missing_identifiers_route_to_a_node_but_are_never_registered() -> None:
    directory = _directory()
    registered = {parse(dataset.owner_and_id(n)[1]).canonical for n in range(5000)}
    for n in range(500):
        text = dataset.missing_id(n)
        assert directory.authority(parse(text).routing) is not None
        assert text not in registered


def test_requests_are_zipf_with_five_percent_missing() -> None:
    wanted = dataset.requests(10_000, 20_000)
    assert 0.04 < wanted.missing / len(wanted.ids) < 0.06
    counts = Counter(i for i in wanted.ids if "MISSING" not in i).most_common()
    # hot products dominate: the top 1% of keys take far more than 1% of requests
    top = sum(c for _, c in counts[:100])
    assert top / sum(c for _, c in counts) > 0.3
    assert dataset.requests(10_000, 100).ids == dataset.requests(10_000, 100).ids  # reproducible


def test_a_record_is_held_by_its_owner_and_every_node_above() -> None:
    assert dataset.holders("sub-a") == ["sub-a", "backbone-1", "super"]
    assert dataset.holders("sub-c") == ["sub-c", "backbone-2", "super"]
