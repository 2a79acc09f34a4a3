"""``python -m eval.dub`` (``talkdit-dub``): dub a video with new speech from a training run's exported weights.

The command line is the one every entry point shares (:mod:`trainer.config.cli`): ``key=value`` overrides,
``--help``, ``--cfg job``, and a bad input (a missing file, a video without a face, weights that do not fit
the base) is one line on stderr naming the file and what was expected, exit status 2 and no output file.
"""

from __future__ import annotations

import logging

from eval.dub.config import DubConfig, register, validate
from trainer.config.cli import Command, run_command
from trainer.config.compose import load_config

COMMAND = Command(
    module="eval.dub",
    config_name="dub",
    synopsis="video=<mp4> audio=<wav|mp3|m4a|mp4> weights=<export dir> base=<diffusers dir> output=<mp4> [key=value]",
    summary="""Dub a video with new speech: the model assembled from a base diffusers folder and a training run's
exports (audio_adapter.safetensors + .json, LoRA) regenerates the face region of a face-centred crop of every
frame, driven by the speech's Whisper features; the crop is pasted back into the full-resolution frames through a
feathered mask, so every pixel outside it is the source's. The output follows the speech (a shorter video is
ping-ponged, loop=none cuts to the shorter of the two), keeps the source's resolution, frame rate and rotation,
carries the speech as AAC, and is written to a temporary file, then renamed.""",
    examples=(
        "python -m eval.dub video=me.mp4 audio=speech.wav weights=exports/stage2 base=/models/LTX-Video output=dub.mp4",
        "python -m eval.dub video=me.mp4 audio=talk.m4a weights=demo_out/exports/stage2 "
        "base=demo_out/data/tiny_base/<corpus>/base_model output=dub.mp4 mask=face loop=none sampler.num_steps=20",
    ),
    notes="""TALKDIT_TINY_BASE: default of base (the tiny base folder `make demo` writes). The speech is decoded to
16 kHz mono for the features (data_prep.audio, the project's one audio path) and muxed from the file itself.""",
    register=register,
)


def _dub(overrides: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    register()
    cfg: DubConfig = load_config("dub", overrides)
    validate(cfg)  # before torch and the media stack load
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    from eval.dub.pipeline import dub

    # The dub logs its own steps; the libraries' per-file loading bars would bury them (and an error line).
    transformers_logging.disable_progress_bar()
    diffusers_logging.disable_progress_bar()

    result = dub(cfg)
    print(
        f"{result.output}: {result.num_frames} frames at {result.fps:.3f} fps ({result.audio_s:.2f} s), "
        f"{result.size[0]}x{result.size[1]}, model crop {result.model_size[1]}x{result.model_size[0]}, "
        f"{result.seconds['total']:.1f} s"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console entry point: bad options or inputs exit with status 2 and one line naming the file."""
    # Every dub input error (DubInputError, WeightsMismatchError, AudioDecodeError) is a ValueError.
    return run_command(COMMAND, argv, _dub, errors=(ValueError,))
