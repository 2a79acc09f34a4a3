"""Building the Whisper encoder and its log-mel front end, from a checkpoint folder or at random.

A folder in the ``openai/whisper-small`` layout is loaded with transformers' own code, refusing a checkpoint
that lacks encoder tensors (never a silently random encoder); its ``preprocessor_config.json`` gives the
front end, else Whisper's standard one. ``random_init`` builds a seeded random encoder (tests and the CPU
demo). :func:`check_front_end` refuses a front end that cannot feed the encoder or adds dither.
:class:`trainer.model.whisper_features.WhisperFeatureExtractor` runs what these build.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from trainer.model.whisper_config import (
    CHUNK_SECONDS,
    HOP_LENGTH,
    SAMPLE_RATE,
    WHISPER_SMALL_URL,
    WhisperArch,
    require_whisper_files,
)

# transformers is imported inside the functions that build an encoder or a front end: importing it takes
# seconds, and only they need it.
if TYPE_CHECKING:
    from transformers import WhisperConfig
    from transformers import WhisperFeatureExtractor as HFWhisperFeatureExtractor
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

logger = logging.getLogger(__name__)

# The front end's 25 ms Hann window (the rate, hop and 30 s window are in whisper_config).
_N_FFT = 400


def _whisper_config(arch: WhisperArch) -> WhisperConfig:
    """A full ``WhisperConfig`` for ``arch``; the decoder mirrors the encoder as in the OpenAI models."""
    from transformers import WhisperConfig

    return WhisperConfig(
        d_model=arch.d_model,
        encoder_layers=arch.encoder_layers,
        encoder_attention_heads=arch.encoder_attention_heads,
        encoder_ffn_dim=arch.encoder_ffn_dim,
        decoder_layers=arch.encoder_layers,
        decoder_attention_heads=arch.encoder_attention_heads,
        decoder_ffn_dim=arch.encoder_ffn_dim,
        num_mel_bins=arch.num_mel_bins,
        max_source_positions=arch.max_source_positions,
        init_std=arch.init_std,
    )


def random_encoder(arch: WhisperArch, seed: int) -> WhisperEncoder:
    """A randomly initialised encoder, identical for identical ``(arch, seed)``."""
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    # Fork the global RNG so building a demo encoder neither depends on nor disturbs the caller's stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return WhisperEncoder(_whisper_config(arch))


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report and progress bar; the caller checks the loading info itself.

    Loading the encoder through ``WhisperModel`` always reports the decoder we drop (or, for folders written
    by :meth:`trainer.model.whisper_features.WhisperFeatureExtractor.save_pretrained`, the decoder that is
    absent) as noise.
    """
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def load_encoder(folder: Path, dtype: torch.dtype) -> WhisperEncoder:
    """Load the encoder of a Whisper checkpoint folder with transformers' loading code."""
    require_whisper_files(folder)
    from transformers import WhisperModel

    # WhisperModel rather than WhisperEncoder.from_pretrained: the checkpoint names encoder tensors
    # "model.encoder.*", which WhisperEncoder does not map, and it would silently return a random encoder.
    with _quiet_transformers():
        model, info = WhisperModel.from_pretrained(
            str(folder), local_files_only=True, dtype=dtype, output_loading_info=True
        )
    missing = sorted(key for key in info["missing_keys"] if key.startswith("encoder."))
    if missing:
        raise RuntimeError(
            f"{folder}: the checkpoint lacks {len(missing)} Whisper encoder tensors (e.g. {missing[:3]}), so "
            f"it is not a Whisper checkpoint in the openai/whisper-small layout ({WHISPER_SMALL_URL}); "
            "refusing to run a partly random encoder"
        )
    encoder = model.encoder
    logger.info(
        "loaded Whisper encoder from %s: %d blocks, width %d, %s",
        folder,
        encoder.config.encoder_layers,
        encoder.config.d_model,
        dtype,
    )
    return encoder


def standard_front_end(num_mel_bins: int) -> HFWhisperFeatureExtractor:
    """Whisper's log-mel front end with the parameters every OpenAI checkpoint uses."""
    from transformers import WhisperFeatureExtractor as HFWhisperFeatureExtractor

    return HFWhisperFeatureExtractor(
        feature_size=num_mel_bins,
        sampling_rate=SAMPLE_RATE,
        hop_length=HOP_LENGTH,
        chunk_length=CHUNK_SECONDS,
        n_fft=_N_FFT,
    )


def load_front_end(folder: Path, num_mel_bins: int) -> HFWhisperFeatureExtractor:
    """The folder's ``preprocessor_config.json`` front end, else the standard one."""
    if not (folder / "preprocessor_config.json").is_file():
        logger.info("%s has no preprocessor_config.json; using Whisper's standard log-mel front end", folder)
        return standard_front_end(num_mel_bins)
    from transformers import WhisperFeatureExtractor as HFWhisperFeatureExtractor

    return HFWhisperFeatureExtractor.from_pretrained(str(folder), local_files_only=True)


def check_front_end(front_end: HFWhisperFeatureExtractor, encoder: WhisperEncoder) -> None:
    """Fail at build time, not mid-dataset, when the front end cannot feed the encoder."""
    if front_end.feature_size != encoder.config.num_mel_bins:
        raise ValueError(
            f"preprocessor feature_size = {front_end.feature_size} but the encoder expects "
            f"num_mel_bins = {encoder.config.num_mel_bins}"
        )
    mel_frames = front_end.n_samples // front_end.hop_length
    expected = encoder.config.max_source_positions * encoder.conv1.stride[0] * encoder.conv2.stride[0]
    if mel_frames != expected:
        raise ValueError(
            f"the front end makes {mel_frames} mel frames per window (chunk_length="
            f"{front_end.chunk_length} s, hop_length={front_end.hop_length}) "
            f"but the encoder expects {expected}"
        )
    if front_end.dither:
        # Dither adds noise to every window: features of a clip would differ run to run.
        raise ValueError(f"preprocessor dither = {front_end.dither}: must be 0 for reproducible features")
