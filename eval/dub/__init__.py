"""``python -m eval.dub``: dub a real video with new speech using exported weights (see :mod:`eval.dub.pipeline`)."""

from eval.dub.cli import main

__all__ = ["main"]
