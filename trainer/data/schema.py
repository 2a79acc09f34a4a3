"""The shard sample schema (DESIGN §5): what data_prep writes and the trainer reads.

A sample is a group of tar members sharing the key ``<clip_id>`` (no dots in the id):

==============================  ==========================================================================
member                          content
==============================  ==========================================================================
``video.mp4``                   the clip, ``F = 8k+1`` frames, H.264, re-encoded once by data_prep
``audio.wav``                   16 kHz mono PCM of the same span
``whisper.npy``                 Whisper features ``[L, B, C]`` float16 at 50 Hz from the clip's frame 0
``face_boxes.npy``              face box per frame ``[F, 4]`` float32, pixels (x0, y0, x1, y1); NaN: none
``lower_face_boxes.npy``        lower-face box per frame ``[F, 4]`` float32 (the V2V mask source)
``ref.mp4``                     ``R`` reference frames from ±5 s around the clip (same size as the clip)
``ref_lower_face_boxes.npy``    lower-face box per reference frame ``[R, 4]`` float32
``json``                        the record (keys in :data:`RECORD_KEYS`)
``latent_mean.npy`` (opt.)      VAE posterior mean ``[C, T, H/32, W/32]`` float16 (raw, not normalised)
``latent_logvar.npy`` (opt.)    VAE posterior log-variance, same shape
``ref_latent_mean.npy`` (opt.)  reference frames' posterior mean ``[C, R, H/32, W/32]`` (one image each)
``ref_latent_logvar.npy`` (opt) reference frames' posterior log-variance
==============================  ==========================================================================
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass

import numpy as np

SCHEMA_VERSION = 1
# Clips in shards have CLIP_FRAME_STEP·k + 1 frames: whole latent frames for LTX-Video's VAE (8 frames per latent
# frame after frame 0), and for any VAE whose temporal factor divides it.
CLIP_FRAME_STEP = 8

REQUIRED_MEMBERS = (
    "video.mp4",
    "audio.wav",
    "whisper.npy",
    "face_boxes.npy",
    "lower_face_boxes.npy",
    "ref.mp4",
    "ref_lower_face_boxes.npy",
    "json",
)
LATENT_MEMBERS = ("latent_mean.npy", "latent_logvar.npy", "ref_latent_mean.npy", "ref_latent_logvar.npy")

RECORD_KEYS = (
    "schema_version",
    "clip_id",
    "source",
    "span",
    "fps",
    "num_frames",
    "width",
    "height",
    "sample_rate",
    "audio_feature_rate",
    "num_reference_frames",
    "caption",
    "scores",
)


class ShardSampleError(ValueError):
    """A shard sample breaks the schema, or a whole shard is unreadable (``key`` is then ``None``).

    The message names the shard, the key and the member.
    """

    def __init__(self, shard: str, key: str | None, problem: str):
        self.shard = shard
        self.key = key
        super().__init__(f"shard {shard}, sample {key}: {problem}" if key is not None else f"shard {shard}: {problem}")


class DataError(ValueError):
    """The training data as a whole cannot be used: too many bad samples, or no readable shard left.

    One message argument, so that a DataLoader worker's error reaches the main process with its own type.
    """


# What reading a shard that is not a (complete) tar file raises, through webdataset.
UNREADABLE_SHARD_ERRORS: tuple[type[BaseException], ...] = (tarfile.TarError, OSError, EOFError)


@dataclass(frozen=True)
class FeatureSpec:
    """What the trainer expects of the audio features: ``B`` layers of ``C`` channels at ``rate`` Hz."""

    layers: int
    dim: int
    rate: float = 50.0


def check_members(members: dict, shard: str, key: str) -> None:
    """Every required member is present.

    Raises:
        ShardSampleError: Naming the first missing member.
    """
    for name in REQUIRED_MEMBERS:
        if name not in members:
            raise ShardSampleError(shard, key, f"missing member '{name}' (present: {sorted(members)})")


def check_record(record: dict, shard: str, key: str) -> None:
    """The JSON record has every key and a schema version this code reads."""
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        raise ShardSampleError(shard, key, f"json record lacks keys {missing}")
    if record["schema_version"] != SCHEMA_VERSION:
        raise ShardSampleError(
            shard, key, f"json schema_version {record['schema_version']!r}, this code reads {SCHEMA_VERSION}"
        )
    if int(record["num_frames"]) % CLIP_FRAME_STEP != 1:
        raise ShardSampleError(shard, key, f"json num_frames={record['num_frames']} is not {CLIP_FRAME_STEP}k+1")


def check_array(arr: np.ndarray, shape: tuple, member: str, shard: str, key: str) -> None:
    """``arr`` has ``shape`` (``None`` entries are free).

    Raises:
        ShardSampleError: Naming the member, the expected and the found shape.
    """
    ok = arr.ndim == len(shape) and all(s is None or s == a for s, a in zip(shape, arr.shape))
    if not ok:
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise ShardSampleError(shard, key, f"member '{member}' has shape {list(arr.shape)}, expected {want}")


def expected_feature_rows(num_frames: int, fps: float, rate: float) -> int:
    """Feature rows a clip of ``num_frames`` at ``fps`` should carry at ``rate`` Hz (ceil of its duration)."""
    return int(np.ceil(num_frames / fps * rate - 1e-6))
