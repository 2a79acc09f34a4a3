"""Evaluation: the sampler (inference modes used for validation and evaluation), metrics and tables.

The sampler will reuse the trainer's token layout, noising and masks (``trainer.model.sequence``,
``trainer.objectives.flow_matching``, ``trainer.model.masks``) rather than copies of them.
"""
