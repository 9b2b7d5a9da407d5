"""Caching of authorization: per-org versions (memory fed by Redis pub/sub, or in-process) and
resolved permissions (per-worker LRU in front of Redis)."""
