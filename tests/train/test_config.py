"""Configuration: every experiment composes, rules fail fast naming the key, the resolved config is saved."""

from pathlib import Path

import pytest
import yaml

from trainer.config.compose import CONF_DIR, compose_config, config_from_container, load_train_config, to_container
from trainer.config.errors import ConfigError

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def test_there_are_the_three_experiments():
    assert {"smoke", "demo", "tiny_base", "edityourself_stage1", "edityourself_stage2"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_onto_the_schema(name):
    cfg = compose_config("train", [f"experiment={name}"])
    assert cfg.experiment_name == name
    assert cfg.data.max_frames % 8 == 1


def test_paper_experiments_carry_the_recipe_numbers():
    s1 = compose_config("train", ["experiment=edityourself_stage1"])
    s2 = compose_config("train", ["experiment=edityourself_stage2"])
    assert (s1.stage.p_audio, s1.stage.p_ff, s1.stage.p_v2v, s1.stage.p_id) == (1.0, 0.9, 0.9, 0.0)
    assert (s2.stage.p_audio, s2.stage.p_ff, s2.stage.p_v2v, s2.stage.p_id) == (0.9, 0.9, 0.9, 0.5)
    assert s1.optim.lr_adam == 1e-5 and s2.optim.lr_adam == 1e-4 and s1.optim.lr_muon_ratio == 100
    assert s1.loop.max_steps == 20000 and s2.loop.max_steps == 10000
    assert s2.stage.lora.enabled and s2.stage.lora.rank == 128 and not s1.stage.lora.enabled
    assert s1.model.transformer.arch.num_layers == 48 and s1.model.transformer.arch.attention_head_dim == 128
    assert s1.audio.feature_layers == 13 and s1.audio.feature_dim == 768
    assert s1.objective.timestep_loc == 2.05 and s1.objective.knn_candidates == 4
    assert s1.objective.contrastive_lambda == 0.05
    assert s1.data.tokens_per_batch == 4 * 16 * 16 * 24 and s1.data.max_frames == 121
    assert (s1.data.min_megapixels, s1.data.max_megapixels) == (0.25, 2.0)
    for s in (s1, s2):  # paper scale: 8 GPUs per node, DeepSpeed ZeRO-2 in bf16
        assert (s.strategy.kind, s.strategy.zero_stage, s.strategy.devices) == ("deepspeed", 2, 8)
        assert s.strategy.precision == "bf16-mixed" and s.strategy.accelerator == "gpu"


BAD = [
    (["data.max_frames=24"], "data.max_frames", "8k+1"),
    (["data.tokens_per_batch=7"], "data.tokens_per_batch", "divides this budget"),
    (["data.min_megapixels=0.5", "data.max_megapixels=0.25"], "data.min_megapixels", "<= data.max_megapixels"),
    (["data.mask=circle"], "data.mask", "enclosing"),
    (["stage.p_audio=1.5"], "stage.p_audio", "probability"),
    (["stage.p_id=-0.1"], "stage.p_id", "probability"),
    (["stage=stage2_lora"], "stage.adapter_init", "stage-1 audio adapter"),
    (["stage.adapter_init=/nonexistent/stage1"], "stage.adapter_init", "does not exist"),
    (["data.foo=1"], "data.foo", "is not a key of the training config; valid keys under data: shards"),
    (["data.tokens_per_batch=abc"], "data.tokens_per_batch", "could not be converted"),
    (["optim.lr_adam=-1"], "optim.lr_adam", "> 0"),
    (["optim.schedule=cosine"], "optim.total_steps", "required"),
    (["strategy.accelerator=tpu"], "strategy.accelerator", "one of"),
    (["objective.knn_candidates=0"], "objective.knn_candidates", ">= 1"),
    (
        ["stage=stage2_lora", "stage.adapter_init=/", "stage.lora.target_modules='a(b'"],
        "stage.lora.target_modules",
        "regex",
    ),
    (["model=ltxv_13b"], "model.transformer.path", "Lightricks/LTX-Video-0.9.7"),
    (["loop.max_steps=0"], "loop.max_steps", ">= 1"),
    (["parallel=ulysses"], "parallel.size", "must divide the world size 1"),
    (["parallel=ulysses", "strategy.devices=4", "parallel.size=4"], "parallel.size", "2 attention heads"),
    (["parallel=ring", "strategy.devices=2"], "parallel.mode", "needs CUDA"),
    (["parallel=hybrid", "strategy.devices=4", "parallel.ulysses_degree=3"], "parallel.ulysses_degree", "heads"),
    (["parallel.mode=tree"], "parallel.mode", "one of"),
    (["strategy.kind=horovod"], "strategy.kind", "one of"),
    (["strategy=deepspeed_cpu", "strategy.zero_stage=1"], "strategy.zero_stage", "2 or 3"),
    (["strategy=deepspeed_cpu", "strategy.offload_parameters=true"], "strategy.offload_parameters", "zero_stage=3"),
    (["strategy=deepspeed_cpu", "optim.muon_adjust_lr=match_rms_adamw"], "optim.muon_adjust_lr", "DeepSpeed's Muon"),
    (["strategy=deepspeed_cpu", "optim.muon_ns_steps=6"], "optim.muon_ns_steps", "DeepSpeed's Muon"),
    (["validation.every_n_steps=-1"], "validation.every_n_steps", ">= 0"),
    (["validation.every_n_steps=5"], "validation.shards", "is required"),
    (["validation.timestep_quantiles=[0.0,0.5]"], "validation.timestep_quantiles", "in (0, 1)"),
    (["validation.timestep_quantiles=[0.5,1.0]"], "validation.timestep_quantiles", "in (0, 1)"),
    (["validation.timestep_quantiles=[0.5,0.5]"], "validation.timestep_quantiles", "repeat"),
    (["loop.loss_t_bins=[0.0,0.5,0.5,1.0]"], "loop.loss_t_bins", "strictly increasing"),
    (["loop.loss_t_bins=[0.5,1.5]"], "loop.loss_t_bins", "in [0, 1]"),
    (["loop.loss_t_bins=[0.5]"], "loop.loss_t_bins", "at least 2"),
    (["validation.sample_steps=0"], "validation.sample_steps", ">= 1"),
    (["validation.num_clips=-1"], "validation.num_clips", ">= 0"),
    (["validation.timestep_quantiles=abc"], "validation.timestep_quantiles", "not a ListConfig"),
    (
        ["validation.every_n_steps=5", "validation.shards=x", "validation.loss_batches=0", "validation.num_clips=0"],
        "validation.loss_batches",
        "nothing to validate",
    ),
    (
        ["validation.every_n_steps=5", "validation.shards=x", "validation.timestep_quantiles=[]"],
        "validation.timestep_quantiles",
        "must not be empty",
    ),
    (
        [
            "validation.every_n_steps=5",
            "validation.shards=x",
            "parallel=ulysses",
            "strategy.devices=2",
            "parallel.size=2",
        ],
        "validation.every_n_steps",
        "validation with sequence parallelism is not supported yet",
    ),
    (
        ["validation.every_n_steps=5", "validation.shards=x", "strategy=deepspeed_cpu", "strategy.zero_stage=3"],
        "validation.every_n_steps",
        "ZeRO-3 is not supported yet",
    ),
]


@pytest.mark.parametrize(("overrides", "key", "rule"), BAD)
def test_validation_names_the_key_and_the_rule(overrides, key, rule, tmp_path):
    with pytest.raises(ConfigError) as err:
        load_train_config(["experiment=smoke", f"data.shards={tmp_path}/x.tar", f"run_dir={tmp_path}/run", *overrides])
    assert err.value.key == key
    assert rule in str(err.value)
    assert not (tmp_path / "run").exists()


def test_configs_saved_before_the_key_renames_still_load(tmp_path):
    cfg = load_train_config(["experiment=smoke", f"data.shards={tmp_path}/x.tar", "strategy=fsdp_cpu"])
    old = to_container(cfg)
    old["strategy"]["strategy"] = old["strategy"].pop("kind")  # strategy.kind was strategy.strategy
    old["parallel"]["name"] = old["parallel"]["mode"]  # parallel.name repeated parallel.mode
    assert config_from_container(old) == cfg


def test_missing_shards_is_named(monkeypatch):
    monkeypatch.delenv("TALKDIT_SHARDS", raising=False)
    with pytest.raises(ConfigError, match="data.shards"):
        load_train_config(["experiment=smoke"])


def test_resolved_config_is_saved_in_the_run_dir(stage1):
    result, _, _ = stage1
    saved = yaml.safe_load((Path(result.run_dir) / "config.yaml").read_text())
    assert saved["experiment_name"] == "smoke"
    assert saved["stage"]["name"] == "stage1_audio"
    assert "${" not in (Path(result.run_dir) / "config.yaml").read_text()  # interpolations resolved
