"""Persistence: SQL (the source of truth) and the Redis-held state that may be lost.

- `store.db`: engine and sessions, one transaction per unit of work.
- `store.models`: the typed SQLAlchemy models, one module per domain.
- `store.redis`: connecting to Redis, or starting the embedded one.
- `store.ephemeral`: conversation state, retry dedup and per-user locks in Redis.
- `store.outbox`: writing notices to the push outbox, in the caller's transaction.
- `store.migrations`: Alembic.

The rules that decide what is written are in `rules/`, one level up.
"""
