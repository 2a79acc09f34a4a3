"""Strategy configs become the right Lightning strategy and DeepSpeed JSON."""

import json

import pytest
from lightning.pytorch.strategies import DDPStrategy

from trainer.checkpoints import read_training_checkpoint
from trainer.config.compose import load_train_config
from trainer.config.errors import ConfigError
from trainer.strategies import (
    TalkditDeepSpeedStrategy,
    TalkditFSDPStrategy,
    build_strategy,
    deepspeed_config,
    write_deepspeed_config,
)


def strategy_config(tmp_path, *overrides):
    cfg = load_train_config(["experiment=smoke", f"data.shards={tmp_path}/x.tar", f"run_dir={tmp_path}/r", *overrides])
    return cfg.strategy


def test_deepspeed_json_follows_the_config_and_leaves_optimisation_to_talkdit(tmp_path):
    st = strategy_config(
        tmp_path,
        "strategy=deepspeed_zero3",
        "strategy.offload_optimizer=true",
        "strategy.offload_parameters=true",
        "strategy.reduce_bucket_size=1000",
    )
    ds = deepspeed_config(st)
    zero = ds["zero_optimization"]
    assert zero["stage"] == 3 and zero["reduce_bucket_size"] == 1000
    assert zero["reduce_scatter"] is False  # DeepSpeed's ZeRO-3 Muon refuses reduce-scatter
    assert zero["offload_optimizer"]["device"] == "cpu" and zero["offload_param"]["device"] == "cpu"
    assert ds["bf16"]["enabled"] is True
    assert ds["gradient_clipping"] == 0.0
    assert not {"optimizer", "scheduler", "gradient_accumulation_steps"} & set(ds)

    zero2 = deepspeed_config(strategy_config(tmp_path, "strategy=deepspeed_zero2"))["zero_optimization"]
    assert zero2["stage"] == 2 and "offload_optimizer" not in zero2 and "offload_param" not in zero2
    assert deepspeed_config(strategy_config(tmp_path, "strategy=deepspeed_cpu"))["bf16"]["enabled"] is False

    path = write_deepspeed_config(st, tmp_path)
    assert json.loads(path.read_text()) == ds
    assert write_deepspeed_config(strategy_config(tmp_path), tmp_path / "ddp") is None


def test_build_strategy(tmp_path):
    assert build_strategy(strategy_config(tmp_path)) == "auto"  # one CPU process
    assert isinstance(build_strategy(strategy_config(tmp_path, "strategy.devices=2")), DDPStrategy)
    ds = build_strategy(strategy_config(tmp_path, "strategy=deepspeed_cpu"))
    assert isinstance(ds, TalkditDeepSpeedStrategy) and ds.exclude_frozen_parameters
    fsdp = build_strategy(strategy_config(tmp_path, "strategy=fsdp_cpu", "strategy.devices=2"))
    assert isinstance(fsdp, TalkditFSDPStrategy) and fsdp._data_parallel_size == 2


def test_a_half_written_deepspeed_folder_is_refused_by_name(tmp_path):
    folder = tmp_path / "last.ckpt"
    (folder / "checkpoint").mkdir(parents=True)  # a save killed before DeepSpeed wrote `latest`
    with pytest.raises(ValueError, match=r"last.ckpt is a folder but not a complete DeepSpeed checkpoint"):
        read_training_checkpoint(folder)
    (folder / "latest").write_text("checkpoint")
    with pytest.raises(ValueError, match=r"cannot read DeepSpeed client state .*mp_rank_00_model_states.pt"):
        read_training_checkpoint(folder)
    with pytest.raises(ConfigError, match="resume"):
        load_train_config(["experiment=smoke", f"data.shards={tmp_path}/x.tar", f"resume={tmp_path}/other.ckpt"])
