"""Sync: each node's chain cut from its outbox, published to a log, followed by others."""
