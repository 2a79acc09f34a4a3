"""``python -m eval.dub`` on a synthetic talking head with the smoke run's exports: length, geometry, audio,
untouched pixels, the export → dub parity, and every bad input refused with one line and no output file."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from eval.dub.cli import main
from tests.eval.dub.conftest import FPS, SIDE, dub_overrides
from tests.eval.dub.media import audio_correlation, psnr_outside_windows, video_stream_info

pytestmark = pytest.mark.slow


def run_dub(overrides, models=None, keep_latents=False):
    from eval.dub.config import register
    from eval.dub.pipeline import dub
    from trainer.config.compose import load_config

    register()
    return dub(load_config("dub", overrides), models, keep_latents)


def test_dub_follows_the_speech_keeps_the_source_and_its_pixels(
    stage2, smoke_base, synthetic_video, other_speech, tmp_path
):
    video, _ = synthetic_video
    speech, wave = other_speech
    out = tmp_path / "dub.mp4"
    result = run_dub(dub_overrides(stage2, smoke_base, video, speech, out))
    info = video_stream_info(out)
    speech_s = wave.size / 16000
    # 2.2 s of speech over a 1.6 s video: ping-ponged to the speech's length at the source's geometry.
    assert result.looped and result.num_frames == round(speech_s * FPS) == info["frames"]
    assert (info["width"], info["height"], info["fps"]) == (SIDE, SIDE, Fraction(25))
    assert info["duration"] == pytest.approx(speech_s, abs=0.5 / FPS)
    assert info["audio_codec"] == "aac" and info["audio_duration"] == pytest.approx(speech_s, abs=1e-3)
    assert audio_correlation(out, speech) >= 0.99
    # Output frames 40.. run backwards through the video, and every pixel outside the crop is the source's.
    assert list(result.source_frames[38:42]) == [38, 39, 38, 37]
    assert psnr_outside_windows(out, video, result.source_frames, result.windows) >= 40.0
    assert not list(tmp_path.glob(".*")), "temporary files left behind"


def test_loop_none_cuts_to_the_shorter_of_video_and_speech(stage2, smoke_base, synthetic_video, other_speech, tmp_path):
    video, clip = synthetic_video
    out = tmp_path / "cut.mp4"
    result = run_dub(dub_overrides(stage2, smoke_base, video, other_speech[0], out, "loop=none"))
    assert not result.looped and result.num_frames == len(clip.frames)
    info = video_stream_info(out)
    assert info["audio_duration"] == pytest.approx(len(clip.frames) / FPS, abs=1e-3)
    assert info["frames"] == len(clip.frames) and audio_correlation(out, other_speech[0]) >= 0.99


def test_rotation_is_kept_and_the_face_found_upright(stage2, smoke_base, synthetic_video, other_speech, tmp_path):
    video, clip = synthetic_video
    turned = tmp_path / "turned.mp4"
    # Stored sideways with a display rotation of 90°, as phones write portrait video.
    with av.open(str(turned), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt, s.options = SIDE, SIDE + 64, "yuv420p", {"crf": "12"}
        s.set_display_rotation(90)
        for rgb in clip.frames:
            upright = np.pad(rgb, ((0, 0), (32, 32), (0, 0)), mode="edge")  # [192, 256, 3] upright
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(np.rot90(upright, -1)), format="rgb24")))
        c.mux(s.encode(None))
    out = tmp_path / "dub.mp4"
    result = run_dub(dub_overrides(stage2, smoke_base, turned, other_speech[0], out, "loop=none"))
    info = video_stream_info(out)
    assert (info["width"], info["height"], info["rotation"]) == (SIDE, SIDE + 64, 90)
    assert psnr_outside_windows(out, turned, result.source_frames, result.windows) >= 40.0


def test_the_dub_samples_what_the_training_checkpoint_samples(
    stage2, smoke_base, synthetic_video, other_speech, tmp_path
):
    from eval.dub.config import register
    from eval.dub.models import load_models
    from tests.train.test_export import trained_module
    from trainer.config.compose import load_config
    from trainer.model.talking_head import TalkingHeadModel

    result, _, _, train_overrides = stage2
    _, module = trained_module(train_overrides, result.last_checkpoint)

    def overrides(name: str, *extra: str) -> list[str]:
        video, speech = synthetic_video[0], other_speech[0]
        return dub_overrides(stage2, smoke_base, video, speech, tmp_path / name, "loop=none", *extra)

    register()
    exported = load_models(load_config("dub", overrides("a.mp4")))
    # The same dub on the training module's own networks (its DiT with the trained adapter and LoRA).
    trained = dataclasses.replace(exported, model=TalkingHeadModel(module.dit, module.vae, module.text_encoder))
    got = run_dub(overrides("a.mp4"), exported, keep_latents=True).latents
    want = run_dub(overrides("b.mp4"), trained, keep_latents=True).latents
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    no_lora = run_dub(overrides("c.mp4", "lora=none"), keep_latents=True).latents
    assert not torch.allclose(no_lora, want, atol=1e-4), "the LoRA changes nothing: a vacuous parity"


def _bad(argv, capsys, *expected: str):
    status = main(argv)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert status == 2 and len(errors) == 1, err
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


def test_bad_inputs_give_one_line_naming_the_file_and_no_output(
    stage2, smoke_base, other_dit_base, synthetic_video, other_speech, tmp_path, capsys
):
    video, _ = synthetic_video
    speech, _ = other_speech
    out = tmp_path / "out.mp4"

    def args(**changes):
        files = {"video": video, "audio": speech, "output": out, "extra": (), **changes}
        return dub_overrides(stage2, smoke_base, files["video"], files["audio"], files["output"], *files["extra"])

    # No video stream: a wav given as the video.
    _bad(args(video=speech), capsys, f"video={speech}", "has no video stream")
    # Unreadable audio.
    junk = tmp_path / "speech.mp3"
    junk.write_bytes(b"not audio at all" * 64)
    _bad(args(audio=junk), capsys, f"audio={junk}")
    # A video without a face: flat grey frames; the message says which seconds.
    empty = tmp_path / "empty.mp4"
    from data_prep.media import write_mp4

    write_mp4(empty, np.full((25, SIDE, SIDE, 3), 128, np.uint8), FPS)
    _bad(args(video=empty), capsys, f"video={empty}", "no face found in 100% of the frames (seconds 0.0-1.0)")
    # A mask mode that does not exist.
    _bad(args(extra=["mask=teeth"]), capsys, "mask", "teeth", "lip, face, head")
    # A model size off the base VAE's token grid, refused from the base's vae/config.json before any work.
    _bad(args(extra=["size=[100,100]"]), capsys, "size", "[100, 100]", "multiples of 32")
    # Weights of another DiT than the base (names the fields that differ).
    other = other_dit_base
    _bad([*args(), f"base={other}"], capsys, f"do not fit base={other}", "num_layers: adapter 2 vs base 3")
    assert not out.exists() and not list(tmp_path.glob(".*out*"))
    # The output exists: refused unless overwrite=true.
    out.write_bytes(b"keep me")
    _bad(args(), capsys, f"output={out} exists", "overwrite=true")
    assert out.read_bytes() == b"keep me"
