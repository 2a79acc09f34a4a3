"""Structured configuration of the data preparation pipeline (``conf/data_prep.yaml``).

Every threshold is config. Scores are computed once and stored in the ledger next to (not merged with)
the thresholds that judged them, so a new threshold re-decides from the ledger without recomputing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from trainer.config.compose import register_schema
from trainer.config.rules import require
from trainer.config.schema import AudioConfig, VAEConfig
from trainer.config.validate import validate_frames
from trainer.data.schema import CLIP_FRAME_STEP


@dataclass
class ProbeConfig:
    """Container-level filters (EditYourself §4.1): frame rate, bitrate, length, audio present."""

    min_fps: float = 24.0  # lowest frame rate accepted
    max_fps: float = 60.0  # highest frame rate accepted
    min_bitrate_kbps: float = 2000.0  # total bitrate of the file, as ffprobe's format bit_rate
    min_frames: int = 121  # fewest frames accepted (one clip's worth)
    require_audio: bool = True  # reject videos without an audio stream


@dataclass
class SceneConfig:
    """Scene cuts with PySceneDetect's ContentDetector on downscaled frames; clips never cross a cut."""

    enabled: bool = True  # run the scene-cut stage
    threshold: float = 27.0  # ContentDetector's default
    min_scene_len: int = 15  # frames
    analysis_width: int = 256  # frames are downscaled to at most this width for detection


@dataclass
class FaceConfig:
    """Face detection (MediaPipe) and the segments where one stable, large face is visible."""

    enabled: bool = True  # run the face stage (off: the whole frame is the face region)
    analysis_long_side: int = 640  # detection runs on frames downscaled to this long side
    min_detection_confidence: float = 0.5  # MediaPipe detection score threshold
    # The largest face box of a segment (shorter side, source pixels) must reach this (SayAnything: 228).
    min_face_px: float = 228.0
    # A second face at least this fraction of the dominant face's area makes a frame ambiguous.
    max_second_face_ratio: float = 0.25
    # Box centre displacement between consecutive frames, in units of the box's longer side, that splits a
    # segment (SayAnything: "split at jumps").
    max_jump: float = 0.15
    max_missing_frames: int = 8  # frames without a detection bridged by interpolation (SayAnything: 8)
    min_segment_s: float = 2.0  # shortest usable segment (seconds with one stable face)
    use_mesh: bool = True  # lower-face boxes from MediaPipe face-mesh landmarks (else from the box)


@dataclass
class SyncConfig:
    """SyncNet filter (official architecture and ``syncnet_v2.model`` weights)."""

    enabled: bool = True  # run SyncNet (needs syncnet_v2.model; off: sync.enabled=false)
    model_path: str | None = None  # syncnet_v2.model; the default config reads TALKDIT_SYNCNET
    min_confidence: float = 3.0  # lowest SyncNet confidence kept
    max_offset_ms: float = 40.0  # one frame at 25 fps
    correct_offset: bool = False  # shift the audio by the measured offset and re-check
    crop_scale: float = 0.4  # face crop margin of the official SyncNet pipeline
    vshift: int = 15  # AV offsets searched, +- frames
    batch_size: int = 20  # SyncNet windows per forward pass


@dataclass
class QualityConfig:
    """HyperIQA filter (official architecture and ``koniq_pretrained.pkl`` weights)."""

    enabled: bool = True  # run HyperIQA (needs koniq_pretrained.pkl; off: quality.enabled=false)
    model_path: str | None = None  # koniq_pretrained.pkl; the default config reads TALKDIT_HYPERIQA
    min_score: float = 40.0  # KonIQ-10k MOS scale (0-100)
    num_frames: int = 8  # frames scored per clip
    crops_per_frame: int = 10  # random 224-px crops averaged per frame


@dataclass
class ClipConfig:
    """How surviving segments are cut into training clips."""

    num_frames: int = 121  # frames per clip (8k+1)
    # Clips are resampled by timestamp to this rate; null keeps the source rate (24-60 fps, into RoPE at training).
    # SyncNet scores a 25 fps view of the same span either way.
    fps: float | None = 25.0
    stride_frames: int = 121  # between clip starts (in clip frames); equal to num_frames: back to back
    # Longer image side of stored clips; larger sources are downscaled (aspect kept, even sides). The recipe
    # trains at up to 2 MP (1080x1920), so null (keep the source size) suits 1080p and smaller sources.
    max_long_side: int | None = None


@dataclass
class FeatureConfig:
    """Per-clip features written into the shards."""

    num_reference_frames: int = 6  # identity reference frames stored per clip
    reference_window_s: float = 5.0  # references are drawn from ±this many seconds around the clip
    # References are drawn from this many evenly spaced frames per second of video (the frames between are not
    # held in memory for them); a ±5 s window then offers about 25 candidates for the 6 references.
    reference_candidates_per_s: float = 2.5
    vae_latents: bool = False  # also store the LTX VAE posterior (needs `vae`)
    vae: VAEConfig = field(default_factory=VAEConfig)
    caption_sidecar_suffixes: list[str] = field(default_factory=lambda: [".txt"])  # <video stem><suffix>
    default_caption: str | None = None  # null: the trainer's data.default_caption applies
    # A pluggable captioner "package.module:function" called as function(frames [F,H,W,3] uint8, fps, source)
    # -> str for clips without a sidecar caption; null: default_caption.
    captioner: str | None = None
    crf: int = 18  # x264 quality of re-encoded clips


@dataclass
class ExecutionConfig:
    """Work units and where they run."""

    workers: int = 1  # local process pool size
    videos_per_unit: int = 4  # videos per work unit (one SLURM array task each)
    samples_per_shard: int = 64  # clips per shard file
    unit_index: int | None = None  # process only this unit (a SLURM array task), then exit
    merge: bool = True  # merge unit ledgers and write the report when every unit is done
    # Seconds of video between two cuts of the frames analysed so far into clips. Clips are encoded, and their
    # frames released, as soon as they are cut, so this bounds memory: about clip + window of full-size frames.
    window_s: float = 1.0


@dataclass
class DataPrepConfig:
    """Root of ``conf/data_prep.yaml``."""

    input_dir: str | None = None  # a folder searched recursively for videos
    input_list: str | None = None  # or a text file with one video path per line
    output_dir: str = MISSING  # shards, ledger, report and config go here
    # Files with these extensions are videos; every other input file gets a ledger row saying so.
    video_extensions: list[str] = field(
        default_factory=lambda: (
            [".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".m2ts"]
            + [".mts", ".flv", ".wmv", ".3gp", ".ogv", ".mxf"]
        )
    )
    seed: int = 0  # seed of reference-frame and HyperIQA crop draws
    audio: AudioConfig = field(default_factory=AudioConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    scenes: SceneConfig = field(default_factory=SceneConfig)
    faces: FaceConfig = field(default_factory=FaceConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    clips: ClipConfig = field(default_factory=ClipConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)


def register() -> None:
    """Register the schema that ``conf/data_prep.yaml``'s defaults list names."""
    register_schema("data_prep_schema", DataPrepConfig)


def validate_data_prep_config(cfg: DataPrepConfig) -> None:
    """Cross-field rules; raises :class:`ConfigError` naming the key."""
    require(
        (cfg.input_dir is None) != (cfg.input_list is None),
        "input_dir",
        cfg.input_dir,
        "set exactly one of input_dir (a folder) and input_list (a file listing videos)",
    )
    p = cfg.probe
    require(0 < p.min_fps <= p.max_fps, "probe.min_fps", p.min_fps, "must be > 0 and <= probe.max_fps")
    require(p.min_bitrate_kbps >= 0, "probe.min_bitrate_kbps", p.min_bitrate_kbps, "must be >= 0")
    require(p.min_frames >= 1, "probe.min_frames", p.min_frames, "must be >= 1")
    validate_frames("clips.num_frames", cfg.clips.num_frames, CLIP_FRAME_STEP)
    require(cfg.clips.fps is None or cfg.clips.fps > 0, "clips.fps", cfg.clips.fps, "must be > 0 or null")
    require(cfg.clips.stride_frames >= 1, "clips.stride_frames", cfg.clips.stride_frames, "must be >= 1")
    require(
        cfg.clips.max_long_side is None or cfg.clips.max_long_side >= 64,
        "clips.max_long_side",
        cfg.clips.max_long_side,
        "must be null or >= 64",
    )
    f = cfg.faces
    require(f.min_face_px >= 0, "faces.min_face_px", f.min_face_px, "must be >= 0")
    require(f.max_jump > 0, "faces.max_jump", f.max_jump, "must be > 0")
    require(0 <= f.max_second_face_ratio <= 1, "faces.max_second_face_ratio", f.max_second_face_ratio, "in [0, 1]")
    require(f.max_missing_frames >= 0, "faces.max_missing_frames", f.max_missing_frames, "must be >= 0")
    require(
        0 < f.min_detection_confidence < 1, "faces.min_detection_confidence", f.min_detection_confidence, "in (0, 1)"
    )
    s = cfg.sync
    if s.enabled:
        require(s.max_offset_ms >= 0, "sync.max_offset_ms", s.max_offset_ms, "must be >= 0")
    require(cfg.quality.num_frames >= 1, "quality.num_frames", cfg.quality.num_frames, "must be >= 1")
    require(
        cfg.features.num_reference_frames >= 1,
        "features.num_reference_frames",
        cfg.features.num_reference_frames,
        "must be >= 1",
    )
    e = cfg.execution
    require(e.workers >= 1, "execution.workers", e.workers, "must be >= 1")
    require(e.videos_per_unit >= 1, "execution.videos_per_unit", e.videos_per_unit, "must be >= 1")
    require(e.samples_per_shard >= 1, "execution.samples_per_shard", e.samples_per_shard, "must be >= 1")
    require(e.window_s > 0, "execution.window_s", e.window_s, "must be > 0")
    require(
        cfg.features.reference_candidates_per_s > 0,
        "features.reference_candidates_per_s",
        cfg.features.reference_candidates_per_s,
        "must be > 0",
    )
