"""Training entry point: ``python -m trainer.train experiment=<name> [key=value ...]``.

The config is composed and validated before the training stack (Lightning, diffusers) is imported, so a
bad override fails in about a second.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

from trainer.config.cli import Command, run_command
from trainer.config.compose import load_train_config

if TYPE_CHECKING:
    from trainer.runner import TrainResult

COMMAND = Command(
    module="trainer.train",
    config_name="train",
    summary="""Train one stage of the recipe (stage 1: the audio adapter; stage 2: LoRA + adapter) on WebDataset
shards. The config is conf/train.yaml with its groups; an experiment is a thin override file. The config is
checked, then the first shard sample and the weight files, and only then is the run directory created.""",
    examples=(
        "python -m trainer.train experiment=edityourself_stage1 'data.shards=/data/shards/shard-*.tar'",
        "python -m trainer.train experiment=edityourself_stage2 stage.adapter_init=exports/stage1 'data.shards=...'",
        "python -m trainer.train experiment=demo 'data.shards=demo_out/data/<prep>/shards/*.tar' loop.max_steps=10",
        "python -m trainer.train experiment=edityourself_stage1 ... resume=<run_dir>/checkpoints/last.ckpt",
    ),
    notes="""Brace patterns must be quoted for Hydra: 'data.shards="/data/shard-{000000..000099}.tar"'.
Environment: TALKDIT_LTX_PATH (the LTX-Video diffusers folder of model=ltxv_13b / ltxv_2b), TALKDIT_SHARDS (the
default of data.shards), TALKDIT_STAGE1_ADAPTER (the default of stage.adapter_init in edityourself_stage2).""",
)


def run(overrides: list[str]) -> TrainResult:
    """Compose the config from overrides, validate it, and train one stage."""
    cfg = load_train_config(overrides)
    from trainer.runner import train

    return train(cfg)


def _train(overrides: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    # Lightning has its own console handler; letting records reach the root logger would print them twice.
    logging.getLogger("lightning.pytorch").propagate = False
    result = run(overrides)
    print(f"run directory: {result.run_dir}")
    print(f"last checkpoint: {result.last_checkpoint}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console entry point; a bad config, shard or checkpoint exits with status 2 and a one-line reason."""
    from trainer.data.schema import ShardSampleError

    return run_command(COMMAND, argv, _train, errors=(ShardSampleError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
