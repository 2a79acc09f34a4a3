"""``python -m eval.dub``: dub a real video with new speech using exported weights (see :mod:`eval.dub.pipeline`)."""
