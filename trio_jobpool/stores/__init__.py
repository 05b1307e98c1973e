"""Durable stores for job pools: the protocol and the SQLite store."""

from ._base import JobRecord, Store
from .sqlite import SqliteStore

__all__ = ["JobRecord", "SqliteStore", "Store"]
