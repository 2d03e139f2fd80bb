"""shardbeat: keeps a consumer-group membership alive and reports shard assignments as records."""

__version__ = "0.1.0"
