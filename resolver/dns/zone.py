"""Which node answers for a DNS name, and how: the directory read as a delegation tree.

A node is authoritative for the zones its prefixes start (``names.cuts``), the super
node also for the network's zone itself; a name below a prefix delegated further down
gets a referral to the child, with the NS and glue its delegation signs. Pure: the
directory in, a ``Where`` out.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.NS import NS
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA

from resolver.dns.names import Inner, Named, NodeHost, Place, cuts, locate, ns_host
from resolver.topology import Delegation, Directory, Route, covers, prefix_key
from schemas.identifiers import RoutingKey


@dataclass(frozen=True, slots=True, kw_only=True)
class Here:
    """This node answers for the name with authority; ``apex`` starts its zone."""

    apex: dns.name.Name


@dataclass(frozen=True, slots=True, kw_only=True)
class Below:
    """The name is in a zone cut below, which ``node`` serves: a referral."""

    cut: dns.name.Name
    node: Delegation
    route: Route


@dataclass(frozen=True, slots=True, kw_only=True)
class Elsewhere:
    """Not in this node's zones, nor below them: above or beside it."""

    route: Route | None


Where = Here | Below | Elsewhere
IN = dns.rdataclass.IN
GLUE_TTL = 300  # as long as the NS it goes with: an address change is seen as soon
REFERRAL_TTL = 300  # NS: how long a delegation's change may take to be seen


@dataclass(frozen=True, slots=True, kw_only=True)
class Cut:
    """Where a zone starts: its apex, the prefix it holds, the node that serves it."""

    apex: dns.name.Name
    prefix: RoutingKey | None  # None: the network's zone itself
    node: Delegation


class Zones:
    """Every zone of the network, as the directory lays them out: the network's own
    first. A prefix handed down whole is served by the last node that holds it."""

    def __init__(self, directory: Directory, zone: dns.name.Name) -> None:
        self.zone = zone
        nodes = directory.by_name
        root = next(d for d in nodes.values() if d.parent is None)
        found: dict[dns.name.Name, Cut] = {zone: Cut(apex=zone, prefix=None, node=root)}
        depth: dict[dns.name.Name, int] = {zone: 0}
        for node in nodes.values():
            below = len(directory.ancestors(node.name))
            for text in node.prefixes:
                prefix = prefix_key(text)
                for apex in cuts(prefix, zone):
                    if apex not in found or depth[apex] < below:
                        found[apex] = Cut(apex=apex, prefix=prefix, node=node)
                        depth[apex] = below
        self.by_apex = found
        self.cuts = [found[zone], *(c for a, c in found.items() if a != zone)]
        self.issued = max(d.issued for d in nodes.values())  # the newest delegation

    def enclosing(self, name: dns.name.Name, *, strictly: bool = False) -> Cut:
        """The zone ``name`` is in: the deepest cut at or (``strictly``) above it."""
        if strictly and name != self.zone:
            name = name.parent()
        while name != self.zone and name not in self.by_apex and len(name) > len(self.zone):
            name = name.parent()
        return self.by_apex.get(name, self.cuts[0])

    def of(self, node: str) -> list[Cut]:
        """The zones ``node`` serves."""
        return [c for c in self.cuts if c.node.name == node]


def place_of(qname: dns.name.Name, zone: dns.name.Name) -> tuple[Place | None, Place]:
    """What the name is (None: nothing can be there), and the nearest place at or above
    it that can be, which says whose zone it is in."""
    place = locate(qname, zone)
    if place is not None:
        return place, place
    name = qname
    while name != zone:
        name = name.parent()
        found = locate(name, zone)
        if found is not None:
            return None, found
    return None, Inner(None)


def where(
    place: Place, qname: dns.name.Name, here: str, directory: Directory, zone: dns.name.Name
) -> Where:
    me = directory.by_name[here]
    routing = _routing(place)
    if routing is None:  # the network's zone itself: the super node's
        return Here(apex=zone) if me.parent is None else Elsewhere(route=None)
    route = directory.route(here, routing)
    if route.kind == "local":
        assert route.prefix is not None
        return Here(apex=cut_above(qname, route.prefix, zone))
    if route.kind == "none":
        return Here(apex=zone) if me.parent is None else Elsewhere(route=route)
    if route.kind == "down":
        node, prefix = _serving(directory, here, route, routing)
        return Below(cut=cut_above(qname, prefix, zone), node=node, route=route)
    return Elsewhere(route=route)


def _routing(place: Place) -> RoutingKey | None:
    if isinstance(place, Named):
        return place.ident.routing
    if isinstance(place, Inner):
        return place.routing
    assert isinstance(place, NodeHost)
    return None


def _serving(
    directory: Directory, here: str, route: Route, routing: RoutingKey
) -> tuple[Delegation, RoutingKey]:
    """The child a referral names, and the prefix its zone starts at: the child on the
    way to the holder, or further down while a node below holds that same prefix whole
    (a referral to the zone the asker is already in would be lame)."""
    assert route.authority is not None
    path = directory.ancestors(route.authority.name)  # holder, parent, ..., super
    step = path.index(here) - 1
    node = directory.by_name[path[step]]
    prefix = _covering(node, routing)
    while step > 0:
        below = directory.by_name[path[step - 1]]
        if prefix not in _prefixes(below):
            break
        node, step = below, step - 1
    return node, prefix


def _prefixes(node: Delegation) -> list[RoutingKey]:
    return [prefix_key(p) for p in node.prefixes]


def _covering(node: Delegation, routing: RoutingKey) -> RoutingKey:
    held = [p for p in _prefixes(node) if covers(p, routing)]
    return max(held, key=lambda p: len(p.labels))


def cut_above(qname: dns.name.Name, prefix: RoutingKey, zone: dns.name.Name) -> dns.name.Name:
    """The cut of ``prefix`` that ``qname`` is in (a GS1 prefix has three)."""
    for cut in cuts(prefix, zone):
        if qname.is_subdomain(cut):
            return cut
    # a name routed by ``prefix`` but under none of its cuts: a GS1 prefix longer than
    # a kind of key's digits, whose names the zone above holds
    return zone


def address(node: Delegation) -> str | None:
    """Where the node's DNS face answers: its signed ``dns`` address, else its URL's
    host when that is an IP address."""
    if node.dns is not None:
        return node.dns
    host = urlsplit(node.url).hostname or ""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def ns_target(node: Delegation, zone: dns.name.Name) -> dns.name.Name:
    """The name an NS record gives for ``node``: ``<node>.ns.<zone>`` when its address
    is known (the super node's zone holds it), else its URL's host name."""
    if address(node) is not None:
        return ns_host(node.name, zone)
    return dns.name.from_text(urlsplit(node.url).hostname or node.name)


def ns_rrset(
    cut: dns.name.Name, node: Delegation, zone: dns.name.Name, ttl: int
) -> dns.rrset.RRset:
    return dns.rrset.from_rdata(cut, ttl, NS(IN, dns.rdatatype.NS, ns_target(node, zone)))


def glue(node: Delegation, zone: dns.name.Name) -> list[dns.rrset.RRset]:
    at = address(node)
    if at is None:
        return []
    host = ns_host(node.name, zone)
    if ":" in at:
        return [dns.rrset.from_rdata(host, GLUE_TTL, AAAA(IN, dns.rdatatype.AAAA, at))]
    return [dns.rrset.from_rdata(host, GLUE_TTL, A(IN, dns.rdatatype.A, at))]
