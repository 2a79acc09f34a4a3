"""Dataset preparation: filtering stages, ledger, shards and the synthetic corpus generator."""
