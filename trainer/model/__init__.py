"""Model code: backbone loading, audio features and adapter, reference tokens, LoRA."""
