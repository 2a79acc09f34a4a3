"""The modules a user runs with ``python -m`` (each also a ``talkdit-*`` console script), in one list.

Every one of them reads its command line through :mod:`trainer.config.cli` (``--help``, ``--cfg job``, one-line
errors); the CLI tests and ``benchmarks/cli_startup.py`` hold each of them to it.
"""

ENTRY_POINTS = (
    "trainer.train",
    "trainer.export",
    "data_prep.run",
    "data_prep.report",
    "eval.run",
    "eval.dub",
    "launch.slurm",
    "launch.demo",
    "data_prep.synthetic.cli",
)
