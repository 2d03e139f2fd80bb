"""Shard maps as short text (core/shard_text.py; the views and the driver share it)."""

from shardbeat.core.shard_text import count, ranges, shard_text

__all__ = ["count", "ranges", "shard_text"]
