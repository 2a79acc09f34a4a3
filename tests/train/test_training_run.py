"""A training run's outputs: metrics, lean resumable checkpoints, resume, cached latents."""

import csv

import lightning as L
import pytest
import torch

from tests.train.conftest import stream_batches, tiny_overrides
from tests.train.shards import write_simple_shards
from trainer.checkpoints import MODULE_PREFIX, check_resume_compatible, read_training_checkpoint
from trainer.config.compose import config_from_container, load_train_config
from trainer.lightning_module import TalkingHeadModule
from trainer.model.vae import load_vae, normalize_latents, sample_posterior
from trainer.run_dir import metrics_files
from trainer.stage_model import build_stage_model, load_trained_model
from trainer.train import run


def metrics(run_dir):
    with open(metrics_files(run_dir)[-1]) as fh:
        return list(csv.DictReader(fh))


def test_run_logs_loss_speed_and_per_condition_losses(stage1):
    result, _, _ = stage1
    rows = metrics(result.run_dir)
    cols = set(rows[0])
    assert {"train/loss", "train/loss_fm", "train/step_time", "train/samples_per_s"} <= cols
    assert any(c.startswith("train/loss_v2v_") for c in cols)
    assert any(c.startswith("train/loss_ff_") for c in cols)
    assert "train/loss_audio_on" in cols  # stage 1 always has audio on
    # Two samples per batch in one process: each takes the other as its contrastive negative.
    assert {r["train/contrastive_negatives"] for r in rows} == {"2.0"}
    assert {r["train/contrastive_missing"] for r in rows} == {"0.0"}
    bins = {f"train/loss_t{lo}-{hi}" for lo, hi in (("0", "0.25"), ("0.25", "0.5"), ("0.5", "0.75"), ("0.75", "1"))}
    per_t = {c for c in cols if c.startswith("train/loss_t")}
    assert per_t and per_t <= bins, per_t
    assert (result.run_dir / "parameters.txt").read_text().count("audio_attn.to_q.weight") == 2


def test_checkpoint_keeps_only_trainable_tensors_and_metadata(stage1, stage2):
    for result, has_lora in ((stage1[0], False), (stage2[0], True)):
        ckpt = read_training_checkpoint(result.last_checkpoint)
        names = list(ckpt["state_dict"])
        assert all(n.startswith(MODULE_PREFIX) for n in names)
        assert any("audio_attn" in n for n in names) and any("audio_projection" in n for n in names)
        assert any(".lora_" in n for n in names) == has_lora
        assert not any(n.startswith(("vae.", "text_encoder.")) for n in names)
        assert not any(n.endswith("attn1.to_q.weight") or n.endswith("attn1.to_q.base_layer.weight") for n in names)
        assert ckpt["talkdit"]["trainable"] == names
        assert ckpt["global_step"] == 3


def test_resume_continues_from_the_saved_step_with_the_saved_weights(simple_shards, stage1, tmp_path):
    result, _, _ = stage1
    saved = read_training_checkpoint(result.last_checkpoint)
    resumed = run(tiny_overrides(simple_shards, tmp_path / "run", 5, f"resume={result.last_checkpoint}"))
    after = read_training_checkpoint(resumed.last_checkpoint)
    assert after["global_step"] == 5
    # A fresh run would train steps 1-5 and log rows 0-4; the resumed one trains steps 4 and 5 only.
    logged = sorted(int(r["step"]) for r in metrics(resumed.run_dir) if r.get("train/loss"))
    assert logged == [3, 4]
    # It went on from the saved optimiser state (Adam's per-tensor step count is 3 + 2, not 2) and weights.
    adamw = after["optimizer_states"][0]["adamw"]["state"].values()
    assert {int(v["step"]) for v in adamw} == {5}
    changed = [k for k, v in saved["state_dict"].items() if not torch.equal(v, after["state_dict"][k])]
    assert changed


def test_per_flow_time_losses_average_each_bins_samples_since_the_last_row(simple_shards, tmp_path):
    cfg = load_train_config(tiny_overrides(simple_shards, tmp_path, 1, "loop.loss_t_bins=[0.0,0.5,0.8,1.0]"))
    module = TalkingHeadModule(cfg)
    assert module.time_bins.pop() == {}
    module.time_bins.add(torch.tensor([1.0, 2.0]), torch.tensor([0.9, 0.1]))
    module.time_bins.add(torch.tensor([4.0, 8.0]), torch.tensor([0.95, 1.0]))
    assert module.time_bins.pop() == {"loss_t0-0.5": 2.0, "loss_t0.8-1": pytest.approx(13 / 3)}
    assert module.time_bins.pop() == {}  # the window starts again after a row


def test_loading_a_checkpoint_restores_the_trained_tensors(stage1):
    result, _, _ = stage1
    cfg = load_train_config(
        tiny_overrides(str(result.run_dir / "unused"), result.run_dir / "x")[:1] + [f"data.shards={result.run_dir}"]
    )
    module = TalkingHeadModule(cfg)
    ckpt = read_training_checkpoint(result.last_checkpoint)
    module.on_load_checkpoint(ckpt)
    module.load_state_dict(ckpt["state_dict"], strict=False)
    own = dict(module.named_parameters())
    for k, v in ckpt["state_dict"].items():
        assert torch.equal(own[k], v)


def test_a_checkpoint_from_before_the_plain_model_still_loads(stage1, tmp_path):
    result, _, _ = stage1
    ckpt = torch.load(result.last_checkpoint, map_location="cpu", weights_only=True)
    # Older checkpoints held the DiT under ``dit.`` (the module had no ``model``).
    ckpt["state_dict"] = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()}
    assert all(k.startswith("dit.transformer.") for k in ckpt["state_dict"])
    torch.save(ckpt, tmp_path / "old.ckpt")
    model, _ = load_trained_model(tmp_path / "old.ckpt")
    own = dict(model.named_parameters())
    for k, v in read_training_checkpoint(result.last_checkpoint)["state_dict"].items():
        assert torch.equal(own[k.removeprefix("model.")], v), k


def test_evaluation_loads_the_trained_model_without_the_training_module(stage1):
    result, _, _ = stage1
    model, cfg = load_trained_model(result.last_checkpoint)
    assert not isinstance(model, L.LightningModule) and cfg.stage.name == "stage1_audio"
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    own = dict(model.named_parameters())
    trained = read_training_checkpoint(result.last_checkpoint)["state_dict"]
    assert trained and all(torch.equal(own[k.removeprefix("model.")], v) for k, v in trained.items())
    # What the stage trains (the adapter) is what the checkpoint holds; the frozen DiT came from its source.
    assert {f"model.{n}" for n, p in build_stage_model(cfg)[0].named_parameters() if p.requires_grad} == set(trained)


@pytest.mark.slow
def test_cached_latents_skip_the_vae(tmp_path):
    cfg = load_train_config(tiny_overrides(f"{tmp_path}/shards/*.tar", tmp_path / "run", 2))
    vae = load_vae(cfg.model.vae)
    write_simple_shards(tmp_path / "shards", num_clips=2, per_shard=2, vae=vae)
    module = TalkingHeadModule(cfg)

    def refuse(*args, **kwargs):
        raise AssertionError("the VAE ran although the shard carries latents")

    module.vae.encode = refuse
    batch = stream_batches(cfg, 1)[0]
    assert set(batch["latents"]) == {"latent_mean", "latent_logvar", "ref_latent_mean", "ref_latent_logvar"}
    x0, refs = module.model.encode_latents(batch, torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(5)
    lat = batch["latents"]
    want_x0 = normalize_latents(sample_posterior(lat["latent_mean"], lat["latent_logvar"], gen), vae)
    want_refs = normalize_latents(sample_posterior(lat["ref_latent_mean"], lat["ref_latent_logvar"], gen), vae)
    assert torch.equal(x0, want_x0) and torch.equal(refs, want_refs)
    assert x0.shape == (2, 8, 3, 2, 2) and refs.shape == (2, 8, 2, 2, 2)
    out = module.compute_loss(module.prepare_step(batch, torch.Generator().manual_seed(0)))
    assert torch.isfinite(out.loss)


@pytest.mark.slow
def test_resumed_run_reaches_the_same_weights_as_an_uninterrupted_one(simple_shards, tmp_path):
    common = ["data.num_workers=1", "data.shuffle_buffer=2", "loop.checkpoint_every_n_steps=2"]
    full = run(tiny_overrides(simple_shards, tmp_path / "full", 4, *common))
    first = run(tiny_overrides(simple_shards, tmp_path / "part", 2, *common))
    resumed = run(tiny_overrides(simple_shards, tmp_path / "part", 4, *common, f"resume={first.last_checkpoint}"))
    a = read_training_checkpoint(full.last_checkpoint)
    b = read_training_checkpoint(resumed.last_checkpoint)
    assert a["global_step"] == b["global_step"] == 4
    assert a["talkdit"]["data_position"] == b["talkdit"]["data_position"]
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k


def test_resume_auto_continues_the_run_dirs_last_checkpoint_or_starts_fresh(simple_shards, tmp_path):
    fresh = run(tiny_overrides(simple_shards, tmp_path / "run", 2, "resume=auto"))
    assert read_training_checkpoint(fresh.last_checkpoint)["global_step"] == 2
    again = run(tiny_overrides(simple_shards, tmp_path / "run", 3, "resume=auto"))
    assert read_training_checkpoint(again.last_checkpoint)["global_step"] == 3


def test_a_run_with_frame_references_and_reference_masking_trains(simple_shards, tmp_path):
    # Every batch generates a fully synthetic block beside clean edge frames, as the sampler's TAPSF blocks
    # with frame references are; the loss stays finite and the adapter learns from it.
    extra = ["stage.p_frame_ref=1.0", "stage.p_id=1.0", "stage.p_ref_drop=0.5", "stage.ref_follows_audio=true"]
    result = run(tiny_overrides(simple_shards, tmp_path / "run", 2, *extra))
    rows = [r for r in metrics(result.run_dir) if r.get("train/loss")]
    assert rows and all(float(r["train/frame_refs"]) == 1.0 for r in rows)
    assert all(float(r["train/identity_refs"]) == 1.0 for r in rows)
    assert all(0 < float(r["train/loss_fm"]) < float("inf") for r in rows)
    # No V2V or first-frame condition in a frame-reference block: every per-condition loss is of the "off" kind.
    conditions = {c for r in rows for c, v in r.items() if c.startswith(("train/loss_v2v_", "train/loss_ff_")) and v}
    assert conditions and all(c.endswith("_off") for c in conditions), conditions
    # SayAnything's per-sample reference masking is logged like the other conditions.
    assert any(c.startswith("train/loss_ref_") for r in rows for c, v in r.items() if v)


def test_a_checkpoint_from_before_new_stage_options_still_resumes(stage1, stage2):
    # Keys the schema gained since a checkpoint was written take their defaults when it is checked.
    result, _, _ = stage1
    ckpt = read_training_checkpoint(result.last_checkpoint)
    stage = ckpt["talkdit"]["config"]["stage"]
    for key in ("p_frame_ref", "p_ref_drop", "ref_follows_audio"):
        del stage[key]
    cfg = config_from_container(read_training_checkpoint(result.last_checkpoint)["talkdit"]["config"])
    check_resume_compatible(TalkingHeadModule(cfg), ckpt, source="old.ckpt")
    # A stage that sets the new option otherwise is still refused, naming the key (stage 2 trains frame refs).
    result2, _, _, _ = stage2
    old2 = read_training_checkpoint(result2.last_checkpoint)
    cfg2 = config_from_container(old2["talkdit"]["config"])
    del old2["talkdit"]["config"]["stage"]["p_frame_ref"]
    with pytest.raises(ValueError, match=r"stage\.p_frame_ref"):
        check_resume_compatible(TalkingHeadModule(cfg2), old2, source="old2.ckpt")


def test_evaluation_refuses_a_checkpoint_without_the_stages_trained_tensors(stage1, tmp_path):
    result, _, _ = stage1
    ckpt = torch.load(result.last_checkpoint, map_location="cpu", weights_only=True)
    dropped = sorted(ckpt["state_dict"])[0]
    del ckpt["state_dict"][dropped]
    torch.save(ckpt, tmp_path / "partial.ckpt")
    with pytest.raises(ValueError, match="lacks 1 of the stage's trained tensors"):
        load_trained_model(tmp_path / "partial.ckpt")


def test_each_micro_batch_of_an_accumulated_step_draws_its_own_noise(simple_shards, tmp_path):
    module = TalkingHeadModule(load_train_config(tiny_overrides(simple_shards, tmp_path, 1)))
    first, second = (torch.randn(4, generator=module.step_generator(m)) for m in (0, 1))
    assert not torch.equal(first, second)
    # Micro-batch 0 is the seed of a run without accumulation: earlier runs repeat exactly.
    assert torch.equal(torch.randn(4, generator=module.step_generator()), first)
