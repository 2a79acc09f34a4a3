"""Run directories, local pipelines (the demo) and, later, SLURM job rendering and submission."""
