"""Writes: the record store on PostgreSQL, its migrations, and (later) the registry API."""
