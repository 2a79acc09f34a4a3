"""The synthetic corpus's clips, their mp4/wav files and dub ground truth, the resumable corpus and its CLI."""

from __future__ import annotations

import json
import wave

import av
import numpy as np
import pytest

from data_prep.synthetic import cli
from data_prep.synthetic.clips import generate_clip, generate_dub_ground_truth, plan_clip, render_clip, write_clip
from data_prep.synthetic.corpus import MANIFEST_NAME, generate_corpus, load_manifest

SR = 16000


# --- clips -------------------------------------------------------------------------------------------
def test_clip_determinism():
    a = generate_clip(7, fps=25.0, num_frames=9, width=96, height=96)
    b = generate_clip(7, fps=25.0, num_frames=9, width=96, height=96)
    c = generate_clip(8, fps=25.0, num_frames=9, width=96, height=96)
    assert a.frames.dtype == np.uint8 and a.frames.shape == (9, 96, 96, 3)
    assert a.face_boxes.dtype == np.float32 and a.face_boxes.shape == (9, 4)
    assert a.lower_face_boxes.shape == (9, 4) and a.mouth_open.shape == (9,)
    for field in ("frames", "audio", "face_boxes", "lower_face_boxes", "mouth_open"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert np.mean(a.frames != c.frames) > 0.3
    assert not np.array_equal(a.audio, c.audio)


# --- files -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fps", [24.0, 29.97, 30000 / 1001, 60.0])
def test_write_clip_mp4_and_wav(tmp_path, fps):
    clip = generate_clip(9, fps=fps, num_frames=14, width=96, height=80)
    video, audio = tmp_path / "c.mp4", tmp_path / "c.wav"
    write_clip(clip, video, audio)
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert abs(float(stream.average_rate) - fps) < 1e-3
        assert (stream.codec_context.width, stream.codec_context.height) == (96, 80)
        assert stream.codec_context.name == "h264"
        assert len(container.streams.audio) == 1
        assert container.streams.audio[0].codec_context.name == "aac"
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    assert decoded.shape == clip.frames.shape
    mse = np.mean((decoded.astype(np.float64) - clip.frames) ** 2)
    assert 10 * np.log10(255.0**2 / mse) > 30.0
    with av.open(str(video)) as container:
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
        assert container.streams.audio[0].rate == SR
    assert abs(samples.shape[0] - clip.audio.shape[0]) < 2048  # AAC frames are 1024 samples

    with wave.open(str(audio)) as wav:
        assert wav.getframerate() == SR and wav.getnchannels() == 1 and wav.getsampwidth() == 2
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
    assert pcm.shape[0] == clip.audio.shape[0]
    assert np.abs(pcm / 32767.0 - clip.audio).max() < 1e-4
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(("seed", "driving", "size", "zoom"), [(5, 9, 128, 1.5), (21, 4, 128, 1.5), (11, 3, 96, 1.0)])
def test_dub_ground_truth_changes_only_the_mouth_region(seed, driving, size, zoom):
    source = generate_clip(seed, fps=25.0, num_frames=40, width=size, height=size, zoom=zoom)
    dub = generate_dub_ground_truth(seed, driving, fps=25.0, num_frames=40, width=size, height=size, zoom=zoom)
    drive = generate_clip(driving, fps=25.0, num_frames=40, width=size, height=size, zoom=zoom)
    # The dub speaks the driving clip's utterance...
    assert np.array_equal(dub.audio, drive.audio) and np.array_equal(dub.mouth_open, drive.mouth_open)
    assert np.abs(dub.mouth_open - source.mouth_open).max() > 0.3
    # ...and differs from the source only inside the lower-face boxes of the two (exactly, pixel for pixel).
    outside = np.ones(source.frames.shape[:3], bool)
    for boxes in (source.lower_face_boxes, dub.lower_face_boxes):
        for i, (x0, y0, x1, y1) in enumerate(boxes):
            outside[i, max(int(np.floor(y0)), 0) : int(np.ceil(y1)), max(int(np.floor(x0)), 0) : int(np.ceil(x1))] = 0
    assert outside.mean() > 0.6
    assert np.array_equal(dub.frames[outside], source.frames[outside])
    changed = (dub.frames != source.frames).any(axis=-1)
    assert changed.sum() > 0.01 * changed.size  # the mouth really moves differently
    # Same head motion: the face box top (brows) is the source's; its sides follow the jaw by under a pixel.
    assert np.array_equal(dub.face_boxes[:, 1], source.face_boxes[:, 1])
    assert np.abs(dub.face_boxes[:, [0, 2]] - source.face_boxes[:, [0, 2]]).max() < 1.0


def test_a_window_of_a_plan_renders_the_same_frames_and_audio():
    whole = generate_clip(3, fps=25.0, num_frames=20, width=64, height=64)
    part = render_clip(plan_clip(3, fps=25.0, num_frames=20, width=64, height=64).window(5, 15))
    assert np.array_equal(part.frames, whole.frames[5:15])
    assert np.array_equal(part.audio, whole.audio[5 * 640 : 15 * 640])
    with pytest.raises(ValueError, match="window"):
        plan_clip(3, fps=25.0, num_frames=20, width=64, height=64).window(15, 25)


def test_write_clip_rejects_odd_sizes(tmp_path):
    clip = generate_clip(1, num_frames=2, width=65, height=64)
    with pytest.raises(ValueError, match="even"):
        write_clip(clip, tmp_path / "odd.mp4")
    assert list(tmp_path.iterdir()) == []


# --- corpus and CLI ----------------------------------------------------------------------------------
def test_corpus_is_resumable_and_regenerates_identically(tmp_path):
    kwargs = dict(num_videos=2, seed=3, fps_choices=(25.0, 30.0), duration_s=0.6, width=96, height=96)
    entries = generate_corpus(tmp_path, **kwargs)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted(
        [MANIFEST_NAME] + [f"{e.video_id}{ext}" for e in entries for ext in (".mp4", ".wav", ".json")]
    )
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    for record, entry in zip(manifest["videos"], entries):
        assert record["id"] == entry.video_id
        assert record["num_frames"] == round(0.6 * record["fps"]) and record["fps"] in (25.0, 30.0)
        assert (record["width"], record["height"], record["sample_rate"]) == (96, 96, SR)
        assert len(record["face_boxes"]) == len(record["lower_face_boxes"]) == record["num_frames"]
        assert abs(record["duration"] - record["num_frames"] / record["fps"]) < 1e-9
    assert load_manifest(tmp_path) == entries

    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    content = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert generate_corpus(tmp_path, **kwargs) == entries
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == stamps

    victim = entries[1].video_id + ".mp4"
    (tmp_path / victim).unlink()
    assert generate_corpus(tmp_path, **kwargs) == entries
    assert (tmp_path / victim).read_bytes() == content[victim]
    for name, stamp in stamps.items():
        if not name.startswith(entries[1].video_id):
            assert (tmp_path / name).stat().st_mtime_ns == stamp, name


def test_cli_writes_a_corpus_and_rejects_unknown_keys(tmp_path, capsys):
    out = tmp_path / "corpus"
    status = cli.main([f"out_dir={out}", "num_videos=1", "duration_s=0.4", "fps=[24,30]", "width=64", "height=64"])
    assert status == 0
    entries = load_manifest(out)
    assert len(entries) == 1 and entries[0].fps in (24.0, 30.0) and entries[0].width == 64
    assert str(out.resolve()) in capsys.readouterr().out

    assert cli.main([f"out_dir={out}", "num_vidoes=3"]) == 2
    assert "num_vidoes" in capsys.readouterr().err
    assert cli.main(["width=wide"]) == 2
    assert "width" in capsys.readouterr().err
