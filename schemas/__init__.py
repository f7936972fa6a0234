"""Identifier grammar, record model, canonical encodings and the SQL schema.

Nothing in this package does I/O: no asyncio, aiohttp, asyncpg or aiokafka.
"""
