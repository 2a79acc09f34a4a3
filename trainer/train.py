"""Training entry point: ``python -m trainer.train experiment=<name> [key=value ...]``.

The config is composed and validated before the training stack (Lightning, diffusers) is imported, so a
bad override fails in about a second.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

from trainer.config.compose import CONF_DIR, load_train_config
from trainer.config.errors import ConfigError

if TYPE_CHECKING:
    from trainer.runner import TrainResult

USAGE = f"""usage: python -m trainer.train [key=value ...]

Hydra overrides of {CONF_DIR}/train.yaml, e.g.
  experiment=edityourself_stage1 data.shards=/data/shards/shard-*.tar
  experiment=edityourself_stage2 stage.adapter_init=<stage-1 export dir>
  experiment=demo data.shards=demo_out/data/prep_6v_128px_25f_seed0/shards/*.tar loop.max_steps=10

Groups: model (tiny, ltxv_2b, ltxv_13b), audio (tiny, whisper_small), stage (stage1_audio, stage2_lora),
optim (muon_adamw, adamw), data (shards), strategy (ddp_cpu), logger (csv, wandb), experiment.
Resume with resume=<run_dir>/checkpoints/last.ckpt. Brace patterns need quoting:
  'data.shards="/data/shard-{{000000..000099}}.tar"'
"""


def run(overrides: list[str]) -> TrainResult:
    """Compose the config from overrides, validate it, and train one stage."""
    cfg = load_train_config(overrides)
    from trainer.runner import train

    return train(cfg)


def main(argv: list[str] | None = None) -> int:
    """Console entry point; a bad config, shard or checkpoint exits with status 2 and a one-line reason."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(USAGE)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    # Lightning has its own console handler; letting records reach the root logger would print them twice.
    logging.getLogger("lightning.pytorch").propagate = False
    from trainer.data.schema import ShardSampleError

    try:
        result = run(args)
    except (ConfigError, ShardSampleError, FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"run directory: {result.run_dir}")
    print(f"last checkpoint: {result.last_checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
