"""The per-query feature store (Zarr v3 shards) and the dump that fills it."""
