"""Reads and the hierarchy of nodes: routing, caching, recursion and referral."""
