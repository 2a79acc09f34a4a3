"""Training data: shard expansion, decoding, equal-token buckets and the resumable stream."""
