"""Options of ``python -m eval.dub`` and their rules (torch-free, so ``--help`` and bad options answer fast)."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from eval.config import check_size
from eval.sampler.config import SamplerConfig
from trainer.config.compose import register_schema
from trainer.config.errors import ConfigError
from trainer.model.whisper_config import WhisperFeaturesConfig

MASKS = ("lip", "face", "head")
LOOPS = ("pingpong", "none")
LORA_FORMATS = ("auto", "diffusers", "peft", "none")
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


@dataclass
class DubConfig:
    """Options of ``python -m eval.dub``.

    Attributes:
        video: The video to dub (any container and codec FFmpeg reads; one visible face).
        audio: The new speech (wav, mp3, m4a, or a video file's audio track).
        weights: Export folder of a training run (``trainer.export``: ``audio_adapter.*``, LoRA files).
        base: Base diffusers folder in the LTX-Video layout the weights were trained on (LTX-Video 13B/2B, or
            talkdit's tiny base); default ``$TALKDIT_TINY_BASE``.
        output: The dubbed mp4 to write (written to a temporary file, then renamed).
        mask: What the model regenerates: ``lip`` (the lower face, as trained), ``face`` or ``head``.
        loop: When the speech is longer than the video: ``pingpong`` plays the video forwards and backwards
            until the speech ends; ``none`` cuts the output to the shorter of the two.
        overwrite: Replace an existing ``output``.
        duration: Seconds of the speech to dub, from its start (a preview, or a cheap check); null: all of it.
        size: ``[height, width]`` of the model crop, multiples of 32; null: the weights' training size.
        crop_scale: Crop window height over the face box's longer side (1.45 frames a face the way the tiny
            base's training clips do).
        smooth_s: Standard deviation, in seconds, of the smoothing of the crop window's path and size.
        min_face_fraction: Fewest frames with a detected face the video may have (a share of its frames).
        reference_frames: Identity reference frames taken from the video; null: as many as training used.
        caption: Caption the DiT is conditioned on; null: the training run's default caption.
        lora: Which LoRA file to load: ``auto``, ``diffusers``, ``peft`` or ``none``.
        whisper: The Whisper encoder of the speech features; null: the one recorded in the weights'
            ``audio_adapter.json`` (the features the adapter was trained on).
        sampler: Euler steps, guidance, seed and TAPSF blocks.
        feather: Softness of the pasted mask's edge, a share of the crop height (Gaussian sigma).
        paste_margin: Growth of the pasted box beyond the mouth region's box, a share of its size.
        head_scale: Growth of the face box for ``mask=head``.
        crf: x264 quality of the output video (lower is better; 17 keeps the untouched pixels near 43 dB).
        preset: x264 speed preset.
        x264_params: x264 options applied on top of ``preset`` (``key=value:key=value``, as ffmpeg's
            ``-x264-params``); empty: the preset alone. The default puts back into ``ultrafast`` the tools that
            cost little on a full-resolution frame and save the most bits (CABAC, deblocking, macroblock-tree
            rate control over a 10-frame lookahead): about 2.5x less CPU than ``veryfast`` for a file about 1.6x
            larger at the same quality (1080x1920 phone video, CRF 17), since encoding every full-resolution
            frame is the largest cost of a dub with a small model.
        frame_cache_mb: Memory for decoded source frames when the output runs backwards through the video.
        analysis_long_side: Longer side frames are downscaled to for face analysis.
        analysis_fps: Frames per second the face analysis looks at (every k-th frame, k = round(fps /
            analysis_fps); boxes in between are interpolated, then smoothed with the rest); 0: every frame.
        device: Where the model runs (``cpu``, ``cuda``).
    """

    video: str = MISSING
    audio: str = MISSING
    weights: str = MISSING
    base: str | None = "${oc.env:TALKDIT_TINY_BASE,null}"
    output: str = MISSING
    mask: str = "lip"
    loop: str = "pingpong"
    overwrite: bool = False
    duration: float | None = None
    size: list[int] | None = None
    crop_scale: float = 1.45
    smooth_s: float = 0.15
    min_face_fraction: float = 0.5
    reference_frames: int | None = None
    caption: str | None = None
    lora: str = "auto"
    whisper: WhisperFeaturesConfig | None = None
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    feather: float = 0.025
    paste_margin: float = 0.1
    head_scale: float = 1.6
    crf: int = 17
    preset: str = "ultrafast"
    x264_params: str = "cabac=1:deblock=0,0:mbtree=1:rc-lookahead=10"
    frame_cache_mb: int = 512
    analysis_long_side: int = 640
    analysis_fps: float = 12.5
    device: str = "cpu"


def register() -> None:
    """Register :class:`DubConfig` as the config ``dub`` (composed like every entry point's)."""
    register_schema("dub", DubConfig)


def validate(cfg: DubConfig) -> None:
    """Check the options that need no file, naming the key and the rule.

    Raises:
        ConfigError: A bad value.
    """
    if cfg.mask not in MASKS:
        raise ConfigError("mask", cfg.mask, f"expected one of {', '.join(MASKS)}")
    if cfg.loop not in LOOPS:
        raise ConfigError("loop", cfg.loop, f"expected one of {', '.join(LOOPS)}")
    if cfg.lora not in LORA_FORMATS:
        raise ConfigError("lora", cfg.lora, f"expected one of {', '.join(LORA_FORMATS)}")
    if cfg.base is None:
        raise ConfigError(
            "base",
            None,
            "required: the diffusers folder the weights were trained on (or set TALKDIT_TINY_BASE to talkdit's "
            "tiny base, which `make demo` writes to demo_out/data/tiny_base/<corpus>/base_model)",
        )
    if cfg.duration is not None and cfg.duration <= 0:
        raise ConfigError("duration", cfg.duration, "expected seconds > 0, or null for the whole speech")
    check_size(cfg.size)  # multiples of the VAE's factor: checked once the base is read (eval.dub.pipeline)
    if cfg.crop_scale <= 1.0:
        raise ConfigError("crop_scale", cfg.crop_scale, "expected > 1 (the crop must hold the whole face box)")
    if cfg.smooth_s < 0:
        raise ConfigError("smooth_s", cfg.smooth_s, "expected >= 0 seconds")
    if not 0.0 < cfg.min_face_fraction <= 1.0:
        raise ConfigError("min_face_fraction", cfg.min_face_fraction, "expected a share in (0, 1]")
    if cfg.reference_frames is not None and cfg.reference_frames < 0:
        raise ConfigError("reference_frames", cfg.reference_frames, "expected >= 0 (0: no identity references)")
    if cfg.sampler.num_steps < 1:
        raise ConfigError("sampler.num_steps", cfg.sampler.num_steps, "expected >= 1")
    if not 0.0 <= cfg.feather < 0.5:
        raise ConfigError("feather", cfg.feather, "expected a share of the crop height in [0, 0.5)")
    if cfg.paste_margin < 0:
        raise ConfigError("paste_margin", cfg.paste_margin, "expected >= 0")
    if cfg.head_scale < 1.0:
        raise ConfigError("head_scale", cfg.head_scale, "expected >= 1")
    if not 0 <= cfg.crf <= 51:
        raise ConfigError("crf", cfg.crf, "expected an x264 CRF in [0, 51]")
    if cfg.preset not in X264_PRESETS:
        raise ConfigError("preset", cfg.preset, f"expected an x264 preset: {', '.join(X264_PRESETS)}")
    if cfg.x264_params and not all(item.count("=") == 1 for item in cfg.x264_params.split(":")):
        raise ConfigError("x264_params", cfg.x264_params, "expected key=value pairs joined by ':' (or empty)")
    if cfg.frame_cache_mb < 1:
        raise ConfigError("frame_cache_mb", cfg.frame_cache_mb, "expected >= 1")
    if cfg.analysis_fps < 0:
        raise ConfigError("analysis_fps", cfg.analysis_fps, "expected >= 0 (0: analyse every frame)")
    if cfg.analysis_long_side < 64:
        raise ConfigError("analysis_long_side", cfg.analysis_long_side, "expected >= 64 pixels")
