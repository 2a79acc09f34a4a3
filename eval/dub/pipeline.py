"""Dubbing a real video: raw mp4 + speech + exported weights → a lip-synced mp4 at the source's resolution.

Steps (each bad input is refused before the next, and no output file exists unless the last succeeds):

1. **Inputs**: the output path (must not exist unless ``overwrite``), the video (a video stream that
   decodes), the speech (:func:`data_prep.audio.decode_audio`: any file → 16 kHz mono, the project's one
   audio path), the export folder's files.
2. **Face track** (pass 1 over the video): data_prep's face analysis of every frame the output needs, gaps
   interpolated, the face-centred crop window of every frame smoothed (:mod:`eval.dub.track`). A video
   with too few faces is refused, naming the seconds without one. Then the model is assembled from the base
   folder and the exports (:mod:`eval.dub.models`; refusing weights that do not fit the base).
3. **Timeline**: the output follows the speech at the source's frame rate (:mod:`eval.dub.timeline`:
   ping-pong looping or cutting), ``F = 8k + 1`` model frames.
4. **Conditions**: Whisper features of the speech (the encoder the adapter was trained on), Eq. 3 windows at
   the clip's own fps; crops at the model resolution (pass 2, streamed into the VAE tile by tile); the
   lower-face boxes in crop coordinates as the V2V mask; identity reference frames spread over the video
   (:mod:`eval.dub.plan`, :mod:`eval.dub.conditions`).
5. **Sampling**: the Euler sampler with TAPSF blocks on the inference model (V2V with the ``mask`` mode).
6. **Back to the source** (pass 3): the latents are decoded tile by tile, each generated crop is pasted
   into its full-resolution frame through a feathered mask around the mouth region (every pixel outside
   it is the decoder's own), and frames are encoded as they come with the speech muxed as AAC
   (:mod:`eval.dub.paste`).

Memory: full-resolution frames are never held beyond :class:`eval.dub.video.FrameReader`'s bounded window;
crops live one VAE tile at a time; what grows with length is per-frame bookkeeping, the latents and the
audio windows (kilobytes per frame for the tiny model).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from data_prep.audio import AUDIO_RATE, AudioDecodeError, decode_audio
from eval.config import check_size
from eval.dub.conditions import encode_crops, sample_inputs
from eval.dub.config import DubConfig, validate
from eval.dub.models import Models, load_models, model_size, training_settings
from eval.dub.paste import paste_and_write
from eval.dub.plan import DubPlan, pick_reference_frames
from eval.dub.timeline import plan_timeline
from eval.dub.track import check_faces, crop_windows, fill_missing, track_faces
from eval.dub.video import DubInputError, FrameReader, VideoInfo, probe_video
from eval.sampler.sampler import EulerSampler
from trainer.atomic import atomic_path
from trainer.model.audio_windows import sample_audio_windows
from trainer.model.exported import read_exported_weights
from trainer.model.talking_head import base_model_config

log = logging.getLogger("talkdit.dub")


@dataclass
class DubResult:
    """What a dub wrote and where its time went.

    Attributes:
        output: The mp4.
        num_frames: Frames written.
        fps: Their rate.
        size: ``(width, height)`` as stored (the source's).
        audio_s: Seconds of speech muxed.
        model_size: ``(height, width)`` of the model crop.
        looped: Whether the video was ping-ponged.
        seconds: Wall time per step (``inputs``, ``model``, ``faces``, ``features``, ``encode``, ``sample``,
            ``paste``) and ``total``.
        sampler_s: Time inside the sampler's calls (the denoising itself).
        seeks: Seeks the frame reader made (backward runs of a ping-pong).
        windows: The crop window of every output frame ``[num_output, 4]`` (x0, y0, x1, y1) in upright source
            pixels (may reach past the frame); every pixel outside it is the source's.
        source_frames: The source frame every output frame shows ``[num_output]``.
        latents: The sampled latents ``[1, C, T, h, w]`` when the dub was asked to keep them (parity checks).
    """

    output: Path
    num_frames: int
    fps: float
    size: tuple[int, int]
    audio_s: float
    model_size: tuple[int, int]
    looped: bool
    seconds: dict[str, float] = field(default_factory=dict)
    sampler_s: float = 0.0
    seeks: int = 0
    windows: np.ndarray | None = None
    source_frames: np.ndarray | None = None
    latents: torch.Tensor | None = None


def read_speech(path: str) -> np.ndarray:
    """The speech as 16 kHz mono (the project's one audio path).

    Raises:
        DubInputError: Missing, unreadable or silent-length file.
    """
    if not Path(path).is_file():
        raise DubInputError(f"audio={path}: no such file (expected speech: wav, mp3, m4a or a video with audio)")
    try:
        wave = decode_audio(path)
    except AudioDecodeError as err:
        raise DubInputError(f"audio={err} (expected speech: wav, mp3, m4a or a video with audio)") from err
    if wave.size < AUDIO_RATE // 10:
        raise DubInputError(f"audio={path}: {wave.size / AUDIO_RATE:.3f} s of audio; expected at least 0.1 s of speech")
    return wave


def check_output(cfg: DubConfig) -> Path:
    """The output path, refused when it exists (unless ``overwrite``) or is a folder."""
    out = Path(cfg.output)
    if out.is_dir():
        raise DubInputError(f"output={out}: is a folder; expected the path of the mp4 to write")
    if out.exists() and not cfg.overwrite:
        raise FileExistsError(f"output={out} exists; pass overwrite=true to replace it")
    return out


def dub(cfg: DubConfig, models: Models | None = None, keep_latents: bool = False) -> DubResult:
    """Dub ``cfg.video`` with ``cfg.audio`` into ``cfg.output`` (see the module docstring for the steps).

    Args:
        cfg: Options.
        models: Networks already loaded for these weights (else built from ``cfg``).
        keep_latents: Return the sampled latents in the result.

    Returns:
        What was written, with timings.

    Raises:
        ConfigError: A bad option value.
        DubInputError: An unusable video or speech file (names it and what was expected).
        FileExistsError: ``output`` exists without ``overwrite``.
        FileNotFoundError: A missing weights or base file.
        WeightsMismatchError: Weights that do not fit the base.
    """
    validate(cfg)
    seconds: dict[str, float] = {}
    t_start = tick = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal tick
        now = time.perf_counter()
        seconds[name] = seconds.get(name, 0.0) + now - tick
        tick = now

    output = check_output(cfg)
    info = probe_video(cfg.video)
    wave = read_speech(cfg.audio)
    if cfg.duration is not None:
        wave = wave[: int(round(cfg.duration * AUDIO_RATE))]
    audio_s = wave.size / AUDIO_RATE
    # The export's files are read (cheap) before the video is analysed, the model built (minutes for 13B) after:
    # a missing file or a video without a face is refused first.
    exported = models.exported if models is not None else read_exported_weights(cfg.weights, cfg.lora)
    check_size(cfg.size, base_model_config(cfg.base).vae.spatial_compression)  # before any work
    lap("inputs")

    fps = float(info.fps)
    stride = max(1, round(fps / cfg.analysis_fps)) if cfg.analysis_fps > 0 else 1
    track = track_faces(info, audio_s + 2.0 / fps, cfg.analysis_long_side, stride=stride)
    if len(track.index) == 0:
        raise DubInputError(f"video={cfg.video}: no frame decoded")
    check_faces(track, cfg.min_face_fraction, fps, cfg.video)
    lap("faces")
    models = models or load_models(cfg, exported)
    model, settings = models.model, training_settings(models.exported)
    size = model_size(cfg, settings, model.spatial_compression)
    lap("model")
    timeline = plan_timeline(track.index.times, fps, audio_s, cfg.loop, model.temporal_compression)
    detected = track.detected
    faces, lower = fill_missing(track.boxes, detected), fill_missing(track.lower, detected)
    windows = crop_windows(faces, fps, size[1] / size[0], cfg.crop_scale, cfg.smooth_s, info.upright_size)
    refs_count = cfg.reference_frames if cfg.reference_frames is not None else int(settings["num_reference_frames"])
    plan = DubPlan(info, timeline, windows, faces, lower, pick_reference_frames(track, timeline, refs_count), size)
    log.info(
        "%s: %d frames read, face in %.0f%% of those analysed; output %d frames at %.3f fps (%s), model %dx%d, "
        "%d latent frames",
        cfg.video,
        len(track.index),
        100 * detected[track.looked].mean(),
        timeline.num_output,
        fps,
        "ping-pong" if timeline.looped else "no loop",
        size[1],
        size[0],
        (timeline.num_model_frames - 1) // model.temporal_compression + 1,
    )
    lap("faces")  # the crop plan counts with the face analysis

    dev = model.device
    spoken = wave[: int(round(timeline.audio_s * AUDIO_RATE))]
    feats = models.whisper.encode(spoken)  # [L, Bl, C]
    adapter = model.adapter_config
    windows_a, valid = sample_audio_windows(
        feats[None].to(dev),
        torch.tensor([feats.shape[0]], device=dev),
        torch.tensor([fps], device=dev),
        timeline.num_model_frames,
        adapter.window,
        adapter.feature_rate,
    )
    caption = cfg.caption if cfg.caption is not None else str(settings["caption"])
    text, text_mask = model.text_encoder([caption])
    null_text, null_mask = model.text_encoder([""])
    lap("features")

    with FrameReader(info, track.index, _cache_frames(cfg, info)) as reader:
        ref_crops: dict[int, np.ndarray] = {}
        latents, ref_latents = encode_crops(model, reader, plan, ref_crops)
        lap("encode")
        conditions = {
            "fps": torch.tensor([fps], device=dev),
            "windows": windows_a,
            "window_valid": valid,
            "text": text,
            "text_mask": text_mask,
            "null_text": null_text,
            "null_text_mask": null_mask,
        }
        inputs = sample_inputs(cfg, model, plan, settings, latents, ref_latents, conditions)
        sampler = EulerSampler(model.dit, cfg.sampler, float(settings["timestep_loc"]))
        t0 = time.perf_counter()
        with torch.no_grad():
            generated = sampler.sample(inputs)
        sampler_s = time.perf_counter() - t0
        lap("sample")
        with atomic_path(output) as tmp:
            paste_and_write(cfg, model, reader, plan, generated, inputs.mask, tmp)
        seeks = reader.seeks
    lap("paste")
    seconds["total"] = time.perf_counter() - t_start
    log.info("dub written to %s (%.1f s; sampler %.1f s)", output, seconds["total"], sampler_s)
    return DubResult(
        output=output,
        num_frames=timeline.num_output,
        fps=fps,
        size=(info.width, info.height),
        audio_s=timeline.audio_s,
        model_size=size,
        looped=timeline.looped,
        seconds=seconds,
        sampler_s=sampler_s,
        seeks=seeks,
        windows=np.array([plan.windows[int(s)].box for s in timeline.order[: timeline.num_output]]),
        source_frames=timeline.order[: timeline.num_output].copy(),
        latents=generated.cpu() if keep_latents else None,
    )


def _cache_frames(cfg: DubConfig, info: VideoInfo) -> int:
    """Decoded 4:2:0 frames that fit in ``frame_cache_mb``."""
    return max(1, int(cfg.frame_cache_mb * 2**20 // (info.width * info.height * 3 // 2)))
