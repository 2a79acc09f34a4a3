"""Parallelism applied from outside the model: the data x sequence process mesh and sequence-parallel attention."""
