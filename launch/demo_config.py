"""The demo's options (``python -m launch.demo key=value ...``), registered as the config ``demo``."""

from __future__ import annotations

from dataclasses import dataclass, field

from trainer.config.compose import register_schema

# Held-out people: a corpus seed the training corpus never uses, 25 fps so clip frames are source frames.
HELDOUT_SEED = 1000


@dataclass
class DemoConfig:
    """Options of the demo (``key=value`` on the command line).

    Attributes:
        out_dir: Corpora, shards and the tiny base are kept here and reused; each run gets ``runs/<timestamp>``.
        num_videos: Synthetic people (one video each) of the tiny base's corpus, and of the adapter's with
            ``fresh_people``.
        heldout_videos: People never trained on: the dub and its benchmark numbers.
        duration_s: Length of each video, seconds.
        fps: Frame rates the corpus mixes (clips are resampled to 25 fps by data_prep).
        size: Frame height and width of the corpus, pixels.
        zoom: Face-centred framing (1 = head and shoulders); lip-sync models are trained on close crops, and the
            tiny VAE resolves a mouth only when it spans enough pixels.
        clip_frames: Frames per training clip (8k+1).
        seed: Seed of the tiny base's corpus and of every run.
        fresh_people: Stages 1 and 2 train on a second corpus (seed ``seed + 1``) of people the tiny base never
            saw, as a pretrained base has never seen the fine-tuning set; a base fitted on the adapter's own clips
            has learned their mouths and leaves the adapter little to learn (false: train on the base's corpus).
        vae_image_steps: Tiny-base VAE fit steps on single frames.
        vae_clip_steps: Tiny-base VAE fit steps on clips and mouth crops.
        vae_decoder_steps: Steps refining the tiny base VAE's decoder alone (0: none; the latents, and so the
            base DiT, stay as they are: :mod:`launch.tiny_base`).
        base_steps: Base-stage steps of the tiny DiT.
        stage1_steps: Optimizer steps of stage 1 (the audio adapter).
        validate_every: Stage-1 validation every this many steps on the held-out people (0: off).
        stage2_steps: Optimizer steps of stage 2 (LoRA + adapter).
        stage2_overrides: Trainer overrides of stage 2 only (the tiny DiT takes a small LoRA at a low rate).
        scale_steps: Steps of the scale step, stage 2 on 2 processes (0 skips it).
        scale_overrides: Trainer overrides of the scale step (strategy and sequence parallelism).
        sample_steps: Euler steps of the samples and of the dubs (0 skips sampling and the dubs).
        dub_seconds: Seconds of speech the last step dubs through ``eval.dub`` (a held-out synthetic video, and a
            real recording of ``real_dir`` when it exists) from the stage-2 export; 0 skips that step.
        real_dir: Folder of real recordings (``demo1_video.mp4`` dubbed with ``demo2_audio.wav``); a relative path
            is taken from the repository root.
        train_overrides: Extra trainer overrides for stages 1 and 2.
        base_overrides: Extra trainer overrides for the base stage.
        prep_overrides: Extra data_prep overrides.
    """

    out_dir: str = "demo_out"
    num_videos: int = 48
    heldout_videos: int = 4
    duration_s: float = 4.0
    fps: list[float] = field(default_factory=lambda: [25.0, 30.0])
    size: int = 128
    zoom: float = 2.0
    clip_frames: int = 25
    seed: int = 0
    fresh_people: bool = True
    vae_image_steps: int = 800
    vae_clip_steps: int = 2400
    vae_decoder_steps: int = 0
    base_steps: int = 1500
    stage1_steps: int = 2000
    validate_every: int = 1000
    stage2_steps: int = 200
    # At stage 2's paper settings (rank 128, the demo's lr_adam 1e-3) the 4-block DiT diverged (loss 0.57 -> 1.0).
    stage2_overrides: list[str] = field(
        default_factory=lambda: ["optim.lr_adam=1e-4", "stage.lora.rank=16", "stage.lora.alpha=16"]
    )
    scale_steps: int = 10
    scale_overrides: list[str] = field(default_factory=lambda: ["strategy=deepspeed_cpu", "parallel=ulysses"])
    sample_steps: int = 16
    dub_seconds: float = 3.0
    real_dir: str = "../shared/data/real"
    train_overrides: list[str] = field(default_factory=list)
    base_overrides: list[str] = field(default_factory=list)
    prep_overrides: list[str] = field(default_factory=list)


def register() -> None:
    """Register :class:`DemoConfig` as the config ``demo`` (composed like every entry point's)."""
    register_schema("demo", DemoConfig)
