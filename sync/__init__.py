"""The log between nodes: outbox, Kafka transport, consumers and the hash chain."""
