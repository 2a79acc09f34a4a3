"""Settings of the Whisper feature extractor (torch-free, so configs compose without importing torch).

:mod:`trainer.model.whisper_features` builds the extractor from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

WHISPER_SMALL_URL = "https://huggingface.co/openai/whisper-small"
DTYPE_NAMES = ("float32", "float16", "bfloat16")
# Whisper's front end: 16 kHz audio, 10 ms hop, 30 s windows (3000 mel frames).
SAMPLE_RATE = 16000
HOP_LENGTH = 160
CHUNK_SECONDS = 30
DOWNLOAD_HINT = (
    f"it comes from {WHISPER_SMALL_URL} (e.g. `huggingface-cli download openai/whisper-small --local-dir <folder>`)"
)
# Single-file and sharded layouts; transformers resolves whichever is present.
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


@dataclass
class WhisperArch:
    """Shape of a Whisper encoder, used only when building a random encoder (``random_init=True``).

    The defaults are Whisper-small's encoder. A loaded checkpoint brings its own ``config.json`` and
    ignores this.

    Attributes:
        d_model: Width C of every hidden state (768 for Whisper-small).
        encoder_layers: Number of transformer blocks; the features stack ``encoder_layers + 1``
            hidden states (the embedding output and each block's output).
        encoder_attention_heads: Attention heads per block.
        encoder_ffn_dim: Hidden width of each block's MLP.
        num_mel_bins: Log-mel channels of the front end (80 for all Whisper models up to large-v2).
        max_source_positions: Encoder positions per 30 s window; must stay 1500, the number of 50 Hz
            frames in 30 s, because the front end always produces 3000 mel frames.
        init_std: Standard deviation of the random weights (transformers' Whisper default: 0.02). At 0.02
            a small random encoder's features are almost all positional embedding: what the audio says moves
            them by about 1 % of their spread, too little for an adapter to learn from.
    """

    d_model: int = 768
    encoder_layers: int = 12
    encoder_attention_heads: int = 12
    encoder_ffn_dim: int = 3072
    num_mel_bins: int = 80
    max_source_positions: int = 1500
    init_std: float = 0.02

    def __post_init__(self) -> None:
        for name in (
            "d_model",
            "encoder_layers",
            "encoder_attention_heads",
            "encoder_ffn_dim",
            "num_mel_bins",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"WhisperArch.{name} = {getattr(self, name)!r}: must be >= 1")
        if not self.init_std > 0:
            raise ValueError(f"WhisperArch.init_std = {self.init_std!r}: must be > 0")
        if self.d_model % self.encoder_attention_heads:
            raise ValueError(
                f"WhisperArch.d_model = {self.d_model} is not divisible by "
                f"encoder_attention_heads = {self.encoder_attention_heads}"
            )
        expected = CHUNK_SECONDS * SAMPLE_RATE // HOP_LENGTH // 2
        if self.max_source_positions != expected:
            raise ValueError(
                f"WhisperArch.max_source_positions = {self.max_source_positions}: must be {expected} "
                f"(the 50 Hz frames of one {CHUNK_SECONDS} s window the log-mel front end produces)"
            )


def tiny_whisper_arch() -> WhisperArch:
    """A tiny encoder (C=32, 4 blocks so B=5) for fast CPU tests; the 30 s window is unchanged."""
    return WhisperArch(d_model=32, encoder_layers=4, encoder_attention_heads=2, encoder_ffn_dim=64)


@dataclass
class WhisperFeaturesConfig:
    """How to build the Whisper feature extractor.

    Exactly one of ``path`` and ``random_init`` selects the weights; the default (neither) is a valid
    config value but building an extractor from it raises ``ValueError``, so a run can never fall back
    to random features by accident.

    Attributes:
        path: Local folder in the ``openai/whisper-small`` layout: ``config.json``, ``model.safetensors``
            or ``pytorch_model.bin``, optionally ``preprocessor_config.json`` (else Whisper's standard
            front end is used). Download from https://huggingface.co/openai/whisper-small.
        random_init: Build a randomly initialised encoder of shape ``arch`` instead of loading one.
            For tests and the CPU demo only.
        arch: Encoder shape for ``random_init``; ignored when loading from ``path``.
        seed: Seed of the random initialisation, so every data-prep worker building a random encoder
            gets the same one.
        dtype: Encoder compute dtype: ``float32``, ``bfloat16`` or ``float16``. Features are always
            returned as float32.
        device: Device the encoder and the STFT run on, e.g. ``cpu`` or ``cuda:0``.
        batch_chunks: 30 s chunks per encoder forward; bounds memory (roughly 60 MB of float32
            hidden states per chunk for Whisper-small).
    """

    path: str | None = None
    random_init: bool = False
    arch: WhisperArch = field(default_factory=WhisperArch)
    seed: int = 0
    dtype: str = "float32"
    device: str = "cpu"
    batch_chunks: int = 8

    def __post_init__(self) -> None:
        if self.path is not None and self.random_init:
            raise ValueError(
                f"WhisperFeaturesConfig: path = {self.path!r} and random_init = True are exclusive; "
                "choose the checkpoint folder or the random encoder"
            )
        if self.dtype not in DTYPE_NAMES:
            raise ValueError(f"WhisperFeaturesConfig.dtype = {self.dtype!r}: must be one of {sorted(DTYPE_NAMES)}")
        if self.batch_chunks < 1:
            raise ValueError(f"WhisperFeaturesConfig.batch_chunks = {self.batch_chunks!r}: must be >= 1")


def whisper_folder_problem(folder: Path) -> str | None:
    """What is missing from a Whisper folder (``None`` when it holds a config and weights)."""
    if not folder.is_dir():
        return (
            f"Whisper folder {folder} does not exist; it must hold config.json and model.safetensors "
            "(or pytorch_model.bin)"
        )
    if not (folder / "config.json").is_file():
        return f"Whisper config {folder / 'config.json'} is missing"
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        return f"Whisper weights {folder / 'model.safetensors'} (or pytorch_model.bin) are missing"
    return None


def require_whisper_files(folder: Path) -> None:
    """Raise ``FileNotFoundError`` naming what is missing from a Whisper folder and where it comes from."""
    problem = whisper_folder_problem(folder)
    if problem is not None:
        raise FileNotFoundError(f"{problem}: {DOWNLOAD_HINT}")
