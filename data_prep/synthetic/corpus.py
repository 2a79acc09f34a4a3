"""A folder of synthetic talking-head videos with a manifest, generated resumably.

Layout of ``out_dir``::

    <video_id>.mp4    H.264 + AAC
    <video_id>.wav    16 kHz 16-bit PCM
    <video_id>.json   the video's manifest record; written last, so its presence marks the video complete
    manifest.json     all records, written (atomically) after every video is complete
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from data_prep.synthetic.clips import generate_clip, write_clip
from trainer.atomic import atomic_write_text

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
# Bumped whenever the renderer or the speech synthesiser changes what a seed produces, so that an
# existing corpus made by older code is regenerated rather than silently reused.
GENERATOR_VERSION = 3
SAMPLE_RATE = 16000


@dataclasses.dataclass(frozen=True)
class CorpusEntry:
    """One video of a synthetic corpus, as recorded in the manifest.

    Attributes:
        video_id: file stem of the video's files.
        seed: seed the clip was generated from (derived from the corpus seed and the video index).
        fps: frames per second.
        num_frames: number of frames.
        width: frame width in pixels.
        height: frame height in pixels.
        duration: num_frames / fps, seconds.
        sample_rate: audio sample rate, Hz.
        face_boxes: per frame (x0, y0, x1, y1) face box in pixels.
        lower_face_boxes: per frame (x0, y0, x1, y1) lower-face box in pixels.
        generator: version of the generator that made the video (:data:`GENERATOR_VERSION`).
        zoom: camera zoom (1: head and shoulders; 1.5: face-centred).
    """

    video_id: str
    seed: int
    fps: float
    num_frames: int
    width: int
    height: int
    duration: float
    sample_rate: int
    face_boxes: tuple[tuple[float, float, float, float], ...]
    lower_face_boxes: tuple[tuple[float, float, float, float], ...]
    generator: int = GENERATOR_VERSION
    zoom: float = 1.0

    def to_json(self) -> dict:
        """The manifest record (``video_id`` is stored as ``id``)."""
        record = {"id": self.video_id}
        record.update(dataclasses.asdict(self))
        del record["video_id"]
        record["face_boxes"] = [list(b) for b in self.face_boxes]
        record["lower_face_boxes"] = [list(b) for b in self.lower_face_boxes]
        return record

    @staticmethod
    def from_json(record: dict) -> CorpusEntry:
        """Inverse of ``to_json``."""
        fields = dict(record)
        fields["video_id"] = fields.pop("id")
        fields["face_boxes"] = tuple(tuple(float(x) for x in b) for b in fields["face_boxes"])
        fields["lower_face_boxes"] = tuple(tuple(float(x) for x in b) for b in fields["lower_face_boxes"])
        return CorpusEntry(**fields)


def video_plan(seed: int, index: int, fps_choices: Sequence[float]) -> tuple[str, int, float]:
    """Id, clip seed and frame rate of video ``index`` of the corpus with seed ``seed``.

    Depends only on (seed, index, fps_choices), so growing a corpus keeps its existing videos.
    """
    rng = np.random.default_rng([int(seed), int(index)])
    clip_seed = int(rng.integers(0, 2**31 - 1))
    fps = float(fps_choices[int(rng.integers(0, len(fps_choices)))])
    return f"synth_s{int(seed)}_{int(index):05d}", clip_seed, fps


def generate_corpus(
    out_dir: str | os.PathLike,
    num_videos: int,
    seed: int = 0,
    fps_choices: Sequence[float] = (25.0,),
    duration_s: float = 5.0,
    width: int = 256,
    height: int = 256,
    zoom: float = 1.0,
) -> list[CorpusEntry]:
    """Generate (or complete) a corpus of synthetic talking-head videos.

    Videos whose files and record already exist with the requested settings are skipped, so an
    interrupted run resumes where it stopped and a deleted video is regenerated identically.

    Args:
        out_dir: output folder (created if missing).
        num_videos: number of videos (>= 0).
        seed: corpus seed; video i's seed and frame rate derive from (seed, i).
        fps_choices: frame rates to draw from, each in (0, 240].
        duration_s: target length of every video; num_frames = max(1, round(duration_s * fps)).
        width: frame width in pixels (even, >= 64).
        height: frame height in pixels (even, >= 64).
        zoom: camera zoom about the frame centre (1: head and shoulders; 1.5: face-centred crops).

    Returns:
        The corpus entries in index order.
    """
    if num_videos < 0:
        raise ValueError(f"num_videos must be >= 0, got {num_videos}")
    if not fps_choices:
        raise ValueError("fps_choices must not be empty")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for index in range(num_videos):
        video_id, clip_seed, fps = video_plan(seed, index, fps_choices)
        num_frames = max(1, round(duration_s * fps))
        expected = {
            "seed": clip_seed,
            "fps": fps,
            "num_frames": num_frames,
            "width": int(width),
            "height": int(height),
            "sample_rate": SAMPLE_RATE,
            "generator": GENERATOR_VERSION,
            "zoom": float(zoom),
        }
        entry = _load_complete(out, video_id, expected)
        if entry is None:
            entry = _make_video(out, video_id, expected)
        entries.append(entry)
    header = {"version": MANIFEST_VERSION, "corpus_seed": int(seed), "num_videos": int(num_videos)}
    # One line per video keeps the manifest readable despite the per-frame boxes.
    lines = [json.dumps(header)[:-1] + ', "videos": [']
    lines.append(",\n".join(json.dumps(e.to_json()) for e in entries))
    lines.append("]}")
    _write_text_if_changed(out / MANIFEST_NAME, "\n".join(lines) + "\n")
    return entries


def load_manifest(out_dir: str | os.PathLike) -> list[CorpusEntry]:
    """Entries of a finished corpus, read from its manifest."""
    manifest = json.loads((Path(out_dir) / MANIFEST_NAME).read_text())
    return [CorpusEntry.from_json(record) for record in manifest["videos"]]


def _load_complete(out: Path, video_id: str, expected: dict) -> CorpusEntry | None:
    record_path = out / f"{video_id}.json"
    if not (record_path.exists() and (out / f"{video_id}.mp4").exists() and (out / f"{video_id}.wav").exists()):
        return None
    try:
        record = json.loads(record_path.read_text())
    except json.JSONDecodeError:
        return None
    if any(record.get(key) != value for key, value in expected.items()):
        return None
    return CorpusEntry.from_json(record)


def _make_video(out: Path, video_id: str, expected: dict) -> CorpusEntry:
    clip = generate_clip(
        expected["seed"],
        fps=expected["fps"],
        num_frames=expected["num_frames"],
        width=expected["width"],
        height=expected["height"],
        sample_rate=expected["sample_rate"],
        zoom=expected["zoom"],
    )
    write_clip(clip, out / f"{video_id}.mp4", out / f"{video_id}.wav")
    entry = CorpusEntry(
        video_id=video_id,
        seed=expected["seed"],
        fps=expected["fps"],
        num_frames=clip.num_frames,
        width=expected["width"],
        height=expected["height"],
        duration=clip.duration_s,
        sample_rate=clip.sample_rate,
        face_boxes=_rounded_boxes(clip.face_boxes),
        lower_face_boxes=_rounded_boxes(clip.lower_face_boxes),
        zoom=expected["zoom"],
    )
    _write_text_if_changed(out / f"{video_id}.json", json.dumps(entry.to_json()) + "\n")
    return entry


def _rounded_boxes(boxes: np.ndarray) -> tuple[tuple[float, float, float, float], ...]:
    # Hundredths of a pixel keep the manifest small; float32 noise below that carries no information.
    return tuple(tuple(round(float(x), 2) for x in box) for box in boxes)


def _write_text_if_changed(path: Path, text: str) -> None:
    """Atomically write ``text``; leave the file untouched if it already holds exactly this text."""
    if path.exists() and path.read_text() == text:
        return
    atomic_write_text(path, text)
