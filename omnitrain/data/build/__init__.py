"""Offline tools that write shards: pack a manifest, the demo data, media encoders, the shard writer."""
