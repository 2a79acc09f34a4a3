"""Official-architecture models used by data preparation filters (SyncNet, HyperIQA)."""
