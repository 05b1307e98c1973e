"""Stores for job pools: the protocol of durable stores, SQLite, and Redis (distributed)."""

from ._base import JobRecord, Store
from .redis import RedisStore
from .sqlite import SqliteStore

__all__ = ["JobRecord", "RedisStore", "SqliteStore", "Store"]
