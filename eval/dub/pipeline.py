"""Dubbing a real video: raw mp4 + speech + exported weights → a lip-synced mp4 at the source's resolution.

Steps (each bad input is refused before the next, and no output file exists unless the last succeeds):

1. **Inputs**: the output path (must not exist unless ``overwrite``), the video (a video stream that
   decodes), the speech (:func:`data_prep.audio.decode_audio`: any file → 16 kHz mono, the project's one
   audio path), the export folder's files.
2. **Face track** (pass 1 over the video): data_prep's face analysis of every frame the output needs, gaps
   interpolated, the face-centred crop window of every frame smoothed (:mod:`eval.dub.track`). A video
   with too few faces is refused, naming the seconds without one. Then the model is assembled from the base
   folder and the exports (:meth:`trainer.model.talking_head.TalkingHeadModel.from_exports`, refusing weights
   that do not fit the base).
3. **Timeline**: the output follows the speech at the source's frame rate (:mod:`eval.dub.timeline`:
   ping-pong looping or cutting), ``F = 8k + 1`` model frames.
4. **Conditions**: Whisper features of the speech (the encoder the adapter was trained on), Eq. 3 windows at
   the clip's own fps; crops at the model resolution (pass 2, streamed into the VAE tile by tile); the
   lower-face boxes in crop coordinates as the V2V mask; identity reference frames spread over the video.
5. **Sampling**: the Euler sampler with TAPSF blocks on the inference model (V2V with the ``mask`` mode).
6. **Back to the source** (pass 3): the latents are decoded tile by tile, each generated crop is pasted
   into its full-resolution frame through a feathered mask around the mouth region (every pixel outside
   it is the decoder's own), and frames are encoded as they come with the speech muxed as AAC.

Memory: full-resolution frames are never held beyond :class:`eval.dub.video.FrameReader`'s bounded window;
crops live one VAE tile at a time; what grows with length is per-frame bookkeeping, the latents and the
audio windows (kilobytes per frame for the tiny model).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from data_prep.audio import AUDIO_RATE, AudioDecodeError, decode_audio
from eval.config import check_size
from eval.dub.background import Behind, Prefetch
from eval.dub.config import DubConfig, validate
from eval.dub.geometry import Window, cut_crop, paste_crop
from eval.dub.timeline import Timeline, plan_timeline
from eval.dub.track import FaceTrack, check_faces, crop_windows, fill_missing, track_faces
from eval.dub.video import DubInputError, FrameReader, VideoInfo, probe_video, writable_copy, yuv_planes
from eval.dub.writer import DubWriter
from eval.sampler.modes import head_boxes, mode_mask
from eval.sampler.paste import frame_mask
from eval.sampler.sampler import EulerSampler, SampleInputs
from eval.sampler.vae_tiling import SlidingFrames, iter_tiled_decode, tiled_encode_frames
from trainer.atomic import atomic_path
from trainer.model.audio_windows import sample_audio_windows
from trainer.model.dit_inputs import identity_references
from trainer.model.exported import ExportedWeights, WeightsMismatchError, read_exported_weights
from trainer.model.masks import latent_frame_groups
from trainer.model.talking_head import TalkingHeadModel, base_model_config
from trainer.model.vae import denormalize_latents, normalize_latents
from trainer.model.whisper_features import WhisperArch, WhisperFeatureExtractor, WhisperFeaturesConfig

log = logging.getLogger("talkdit.dub")

# Used when an export predates the training settings in audio_adapter.json (the schema's defaults).
_TRAINING_DEFAULTS = {
    "timestep_loc": 2.05,
    "num_reference_frames": 6,
    "mask": "enclosing",
    "mask_padding": 0.1,
    "mask_alpha": 0.75,
    "caption": "a person talking to the camera",
    "min_megapixels": 0.25,
}


# Full-resolution frames queued between the paste pass's threads (3 MB each at 1080x1920).
_QUEUED_FRAMES = 4


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


@dataclass
class Models:
    """The networks a dub runs (built once, reusable across dubs with the same weights).

    Attributes:
        model: DiT with the exported adapter and LoRA, VAE and text encoder (eval mode, frozen).
        whisper: The encoder of the speech features the adapter was trained on.
        exported: The export's files as read (adapter config, training settings, LoRA).
    """

    model: TalkingHeadModel
    whisper: WhisperFeatureExtractor
    exported: ExportedWeights


def training_settings(exported: ExportedWeights) -> dict:
    """The training run's sampling-relevant settings from the export (schema defaults where it has none)."""
    return {**_TRAINING_DEFAULTS, **exported.meta.get("training", {})}


def whisper_config(cfg: DubConfig, exported: ExportedWeights) -> WhisperFeaturesConfig:
    """The Whisper encoder of the speech features: ``cfg.whisper``, else the one the export records.

    Raises:
        DubInputError: Neither says which encoder.
    """
    if cfg.whisper is not None:
        return cfg.whisper
    recorded = exported.meta.get("audio", {}).get("encoder")
    if recorded is None:
        raise DubInputError(
            f"weights={exported.folder}: audio_adapter.json does not record the Whisper encoder of the training "
            "features (an older export); pass whisper.path=<openai/whisper-small folder> or the encoder it used"
        )
    return WhisperFeaturesConfig(**{**recorded, "arch": WhisperArch(**recorded.get("arch", {}))})


def load_models(cfg: DubConfig, exported: ExportedWeights | None = None) -> Models:
    """Assemble the inference model from the base folder and the exports, and the Whisper encoder.

    Args:
        cfg: Options (``weights``, ``base``, ``lora``, ``whisper``, ``device``).
        exported: The export already read (else read from ``cfg.weights``).

    Raises:
        FileNotFoundError: A folder or file is missing (named).
        WeightsMismatchError: The exports do not fit the base, or the Whisper encoder not the adapter.
        DubInputError: The export does not say which Whisper encoder made its features.
    """
    exported = exported or read_exported_weights(cfg.weights, cfg.lora)
    model = TalkingHeadModel.from_exports(cfg.base, exported).to(cfg.device)
    whisper = WhisperFeatureExtractor.from_config(whisper_config(cfg, exported))
    adapter = exported.adapter_config
    if (whisper.num_hidden_states, whisper.hidden_size) != (adapter.feature_layers, adapter.feature_dim):
        raise WeightsMismatchError(
            f"whisper encoder {whisper.source} gives {whisper.num_hidden_states} x {whisper.hidden_size} features; "
            f"the adapter in weights={exported.folder} reads {adapter.feature_layers} x {adapter.feature_dim} "
            "(audio_adapter.json feature_layers x feature_dim): use the encoder the weights were trained with"
        )
    return Models(model, whisper, exported)


def model_size(cfg: DubConfig, settings: dict, spatial: int) -> tuple[int, int]:
    """``(height, width)`` of the crop: ``cfg.size``, else the square of the training run's smallest area.

    Args:
        cfg: The dub's options.
        settings: The training run's settings (:func:`training_settings`).
        spatial: The VAE's pixels per token side; both sides are multiples of it.

    Raises:
        ConfigError: ``size`` is not a multiple of ``spatial``.
    """
    check_size(cfg.size, spatial)
    if cfg.size is not None:
        return int(cfg.size[0]), int(cfg.size[1])
    side = max(spatial, int(round(np.sqrt(float(settings["min_megapixels"]) * 1e6) / spatial)) * spatial)
    return side, side


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


@dataclass
class _Plan:
    """Everything pass 2 and pass 3 need about the frames."""

    info: VideoInfo
    timeline: Timeline
    windows: list[Window]  # per source frame
    faces: np.ndarray  # gap-filled face boxes per source frame [N, 4]
    lower: np.ndarray  # gap-filled lower-face boxes per source frame [N, 4]
    references: list[int]  # source frames of the identity references
    size: tuple[int, int]
    # Per model frame [F, 4], crop pixels: the lower-face ("lower") and face ("face") boxes.
    crop_boxes: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        order = self.timeline.order
        for name, boxes in (("lower", self.lower), ("face", self.faces)):
            self.crop_boxes[name] = np.stack([self.windows[s].to_crop(boxes[s], self.size) for s in order])


def _reference_frames(track: FaceTrack, timeline: Timeline, count: int) -> list[int]:
    """``count`` source frames with a detected face, evenly spread over the frames the output shows."""
    shown = np.unique(timeline.order)
    usable = shown[track.detected[shown]]
    if count <= 0 or usable.size == 0:
        return []
    picks = np.linspace(0, usable.size - 1, min(count, usable.size)).round().astype(int)
    return [int(usable[i]) for i in np.unique(picks)]


def _crops(reader: FrameReader, plan: _Plan, refs: dict[int, np.ndarray]) -> Iterator[torch.Tensor]:
    """Model-resolution crops ``[3, h, w]`` in [−1, 1] of the timeline's frames; reference crops land in ``refs``."""
    info = plan.info
    for src in plan.timeline.order:
        planes = yuv_planes(reader.frame(int(src)), copy=False)  # read only: the crop is cut from the views
        crop = cut_crop(planes, plan.windows[src], info.quarter_turns, plan.size, info.colorspace, info.color_range)
        if int(src) in plan.references and int(src) not in refs:
            refs[int(src)] = crop
        # Scaled in numpy: torch spreads even a 128x128 elementwise op over its thread pool, which costs
        # milliseconds per crop on a busy machine.
        yield torch.from_numpy(crop.transpose(2, 0, 1).astype(np.float32) / np.float32(127.5) - np.float32(1.0))


def _box_mask(box: np.ndarray, size: tuple[int, int], margin: float) -> np.ndarray:
    """A hard ``[h, w]`` float mask of ``box`` (crop pixels) grown by ``margin`` of its size on every side."""
    x0, y0, x1, y1 = (float(v) for v in box)
    gx, gy = margin * (x1 - x0), margin * (y1 - y0)
    out = np.zeros(size, np.float32)
    c0, r0 = max(0, int(np.floor(x0 - gx))), max(0, int(np.floor(y0 - gy)))
    c1, r1 = min(size[1], int(np.ceil(x1 + gx))), min(size[0], int(np.ceil(y1 + gy)))
    out[r0:r1, c0:c1] = 1.0
    return out


def paste_mask(box: np.ndarray, token_region: np.ndarray, size: tuple[int, int], margin: float, sigma: float):
    """Blend weights of one frame: the mouth-region box (grown, feathered) within the generated tokens' mask.

    Args:
        box: The mode's box in crop pixels (lower face, face or head) ``[4]``.
        token_region: ``[h, w]`` in [0, 1]: the feathered pixels of the tokens the model generated in this
            latent frame (:func:`eval.sampler.paste.frame_mask`), so nothing is taken from a clean token's
            re-rendering beyond the feathered edge.
        size: Crop ``(h, w)``.
        margin: Growth of the box.
        sigma: Gaussian softness in crop pixels.

    Returns:
        ``[h, w]`` float32 in [0, 1].
    """
    hard = _box_mask(box, size, margin)
    soft = cv2.GaussianBlur(hard, (0, 0), sigma) if sigma > 0 else hard
    return soft * token_region


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
    plan = _Plan(info, timeline, windows, faces, lower, _reference_frames(track, timeline, refs_count), size)
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
        latents, ref_latents = _encode(model, reader, plan, ref_crops)
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
        inputs = _sample_inputs(cfg, model, plan, settings, latents, ref_latents, conditions)
        sampler = EulerSampler(model.dit, cfg.sampler, float(settings["timestep_loc"]))
        t0 = time.perf_counter()
        with torch.no_grad():
            generated = sampler.sample(inputs)
        sampler_s = time.perf_counter() - t0
        lap("sample")
        with atomic_path(output) as tmp:
            _paste_and_write(cfg, model, reader, plan, generated, inputs.mask, tmp)
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


@torch.no_grad()
def _encode(
    model: TalkingHeadModel, reader: FrameReader, plan: _Plan, ref_crops: dict[int, np.ndarray]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Pass 2: normalised latents of the crops ``[1, C, T, h, w]`` and of the reference crops ``[1, C, R, h, w]``.

    The crops stream into the VAE one temporal tile at a time (posterior means: inference is deterministic).
    ``ref_crops`` is complete once this returns (the crops' thread has stopped).
    """
    vae, dev = model.vae, model.device
    # Decoding and cutting the next crops (a background thread) overlaps the VAE encoding the current tile.
    with Prefetch(_crops(reader, plan, ref_crops), depth=16, name="dub-crops") as crops:
        window = SlidingFrames(crops, lambda w: w.permute(1, 0, 2, 3)[None].to(dev, vae.dtype))
        moments = tiled_encode_frames(vae, window, plan.timeline.num_model_frames)
    mean = moments.float().chunk(2, dim=1)[0]
    latents = normalize_latents(mean, vae)
    if not plan.references:
        return latents, None
    refs = np.stack([ref_crops[i] for i in plan.references])  # [R, h, w, 3]
    video = torch.from_numpy(refs).permute(0, 3, 1, 2)[:, :, None].float().div(127.5).sub(1.0)  # [R, 3, 1, h, w]
    ref_mean = vae.encoder(video.to(dev, vae.dtype)).float().chunk(2, dim=1)[0]  # each frame alone: one latent
    return latents, normalize_latents(ref_mean, vae).permute(2, 1, 0, 3, 4)  # [1, C, R, h, w]


def _sample_inputs(
    cfg: DubConfig, model: TalkingHeadModel, plan: _Plan, settings: dict, latents, ref_latents, conditions: dict
) -> SampleInputs:
    """The sampler's inputs: the crops' latents, the V2V mask of ``cfg.mask``, identity references, audio, text.

    Args:
        cfg: Options.
        model: The inference model.
        plan: Frames, windows and boxes.
        settings: The training run's settings (mask rule).
        latents: ``[1, C, T, h, w]``.
        ref_latents: ``[1, C, R, h, w]`` or ``None``.
        conditions: ``fps`` ``[1]``, ``windows``, ``window_valid``, ``text``, ``text_mask``, ``null_text``,
            ``null_text_mask`` (:class:`eval.sampler.sampler.SampleInputs` fields).
    """
    dev = model.device
    _, _, frames, grid_h, grid_w = latents.shape
    mask = mode_mask(
        "v2v",
        (frames, grid_h, grid_w),
        1,
        cfg.mask,
        lower_face_boxes=torch.from_numpy(plan.crop_boxes["lower"]).float()[None],
        face_boxes=torch.from_numpy(plan.crop_boxes["face"]).float()[None],
        mask_kind=str(settings["mask"]),
        mask_padding=float(settings["mask_padding"]),
        mask_alpha=float(settings["mask_alpha"]),
        head_scale=cfg.head_scale,
        spatial_compression=model.spatial_compression,
        device=dev,
    )
    references = []
    if ref_latents is not None:
        boxes = np.stack([plan.windows[s].to_crop(plan.lower[s], plan.size) for s in plan.references])
        boxes_t = torch.from_numpy(boxes).float()[None].to(dev)
        references.append(identity_references(ref_latents, boxes_t, grid_h, grid_w, conditions["fps"]))
    return SampleInputs(latents=latents, mask=mask, references=references, **conditions)


def _generated_frames(model: TalkingHeadModel, latents: torch.Tensor) -> Iterator[np.ndarray]:
    """Decoded crops ``[h, w, 3]`` uint8 one by one, the VAE decoding one temporal tile at a time."""
    vae = model.vae
    raw = denormalize_latents(latents.float(), vae).to(vae.dtype)
    temb = None
    if getattr(vae.config, "timestep_conditioning", False):
        temb = torch.zeros(raw.shape[0], device=raw.device, dtype=raw.dtype)  # clean latents decode at t = 0
    for chunk in iter_tiled_decode(vae, raw, temb):
        frames = ((chunk.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[0].permute(1, 2, 3, 0).cpu()
        yield from frames.numpy()


def _output_frames(reader: FrameReader, timeline: Timeline) -> Iterator[tuple[int, av.VideoFrame, tuple]]:
    """``(source frame, writable copy, its Y/U/V views)`` of every output frame (:func:`writable_copy`)."""
    for j in range(timeline.num_output):
        src = int(timeline.order[j])
        frame, planes = writable_copy(reader.frame(src))
        yield src, frame, planes


@torch.no_grad()
def _paste_and_write(cfg, model, reader: FrameReader, plan: _Plan, generated, mask, path: Path) -> None:
    """Pass 3: every output frame is its source frame with the generated mouth region pasted in.

    Three threads share the work: one decodes the source frames ahead (and copies each into a frame to
    write), this one decodes the latents and pastes, one encodes and muxes behind; the queues between them
    hold a few full-resolution frames.
    """
    info, timeline, size = plan.info, plan.timeline, plan.size
    sigma = cfg.feather * size[0]
    s = model.spatial_compression
    token_mask = mask[0].float().cpu().numpy()  # [T, gh, gw]
    groups = latent_frame_groups(timeline.num_model_frames, model.temporal_compression)
    latent_of = np.zeros(timeline.num_model_frames, int)
    for t, g in enumerate(groups):
        latent_of[g.start : g.stop] = t
    region_of: dict[int, np.ndarray] = {}  # the current latent frame's pixel mask only: memory stays flat
    key = "lower" if cfg.mask == "lip" else "face"
    boxes = plan.crop_boxes[key]
    if cfg.mask == "head":
        boxes = head_boxes(torch.from_numpy(boxes), cfg.head_scale, size[0], size[1]).numpy()
    writer = DubWriter(path, info, cfg.audio, timeline.audio_s, cfg.crf, cfg.preset, cfg.x264_params)
    sources = Prefetch(_output_frames(reader, timeline), depth=_QUEUED_FRAMES, name="dub-source")
    encoder = Behind(writer.add, depth=_QUEUED_FRAMES, name="dub-writer")
    try:
        crops = _generated_frames(model, generated)
        for j, (src, frame, planes) in enumerate(sources):
            crop = next(crops)
            t = int(latent_of[j])
            if t not in region_of:
                region_of = {t: frame_mask(token_mask[t], s, sigma)}
            weight = paste_mask(boxes[j], region_of[t], size, cfg.paste_margin, sigma)
            paste_crop(planes, plan.windows[src], info.quarter_turns, crop, weight, info.colorspace, info.color_range)
            encoder.put(frame)
        encoder.join()
        writer.finish()
    except BaseException:
        sources.close()
        encoder.abort()
        writer.abort()
        raise
    finally:
        sources.close()
