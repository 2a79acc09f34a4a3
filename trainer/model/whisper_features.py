"""Whisper encoder features, the audio condition of the recipe (EditYourself §3.2, DESIGN §3).

The audio condition is ``c_audio ∈ R^{L×B×C}``: every hidden state of the Whisper-small encoder (the
embedding output plus the output of each of the 12 blocks, so ``B = 13``; ``C = 768``), stacked per
frame at 50 Hz. Whisper only reads 30-second windows, so a waveform is cut into 30 s chunks, each chunk
is zero-padded to 30 s for the log-mel front end and encoded, and each chunk's output is trimmed to the
frames covered by real audio before the chunks are concatenated. One frame covers 320 samples at
16 kHz (mel hop 160 × the encoder's stride-2 convolution), so ``L = ceil(num_samples / 320)``.

data_prep computes these features once per clip and stores them in the shards; the trainer reads the
stored tensors and never runs Whisper. Typical use::

    extractor = WhisperFeatureExtractor.from_config(WhisperFeaturesConfig(path="/models/whisper-small"))
    feats = extractor.encode(waveform_16k)  # [L, 13, 768] float32, on the CPU

The weights come from a local folder in the ``openai/whisper-small`` layout and are loaded by
transformers' own code (:mod:`trainer.model.whisper_loading`); a missing file is an error naming the file and
where it comes from, never a silently random model. ``random_init=True`` builds a random encoder explicitly,
for tests and the CPU demo.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from trainer.model.whisper_config import (
    SAMPLE_RATE,
    WHISPER_SMALL_URL,
    WhisperArch,
    WhisperFeaturesConfig,
    require_whisper_files,
    tiny_whisper_arch,
)
from trainer.model.whisper_loading import (
    check_front_end,
    load_encoder,
    load_front_end,
    random_encoder,
    standard_front_end,
)

if TYPE_CHECKING:
    from transformers import WhisperFeatureExtractor as HFWhisperFeatureExtractor
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

__all__ = [
    "WHISPER_SMALL_URL",
    "WhisperArch",
    "WhisperFeatureExtractor",
    "WhisperFeaturesConfig",
    "require_whisper_files",
    "tiny_whisper_arch",
]

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class WhisperFeatureExtractor(torch.nn.Module):
    """Frozen Whisper encoder producing stacked hidden states ``[L, B, C]`` at 50 Hz.

    The module stays in eval mode with ``requires_grad=False`` whatever its parent does. The log-mel
    front end is transformers' ``WhisperFeatureExtractor``; the encoder is transformers'
    ``WhisperEncoder``.

    Args:
        cfg: Where the weights come from and how to run; see :class:`WhisperFeaturesConfig`.

    Raises:
        ValueError: Neither ``cfg.path`` nor ``cfg.random_init`` is set, or the front end does not fit
            the encoder.
        FileNotFoundError: ``cfg.path`` lacks the folder, ``config.json`` or the weight file.
        RuntimeError: The weight file lacks encoder tensors (not a Whisper checkpoint).
    """

    def __init__(self, cfg: WhisperFeaturesConfig):
        super().__init__()
        if cfg.path is None and not cfg.random_init:
            raise ValueError(
                "WhisperFeaturesConfig needs either path (a local openai/whisper-small folder, "
                f"from {WHISPER_SMALL_URL}) or random_init=True (tests and CPU demo only); got neither"
            )
        dtype = _DTYPES[cfg.dtype]
        if cfg.path is not None:
            folder = Path(cfg.path).expanduser()
            encoder = load_encoder(folder, dtype)
            front_end = load_front_end(folder, encoder.config.num_mel_bins)
            self.source = str(folder)
        else:
            encoder = random_encoder(cfg.arch, cfg.seed)
            front_end = standard_front_end(cfg.arch.num_mel_bins)
            self.source = f"random_init(seed={cfg.seed})"
        check_front_end(front_end, encoder)

        self.cfg = cfg
        self.encoder: WhisperEncoder = encoder.to(device=cfg.device, dtype=dtype)
        self.encoder.requires_grad_(False)
        # Not a torch module: holds only the mel filter bank, so it is kept as a plain attribute.
        self.front_end: HFWhisperFeatureExtractor = front_end
        self.eval()

    @classmethod
    def from_config(cls, cfg: WhisperFeaturesConfig) -> WhisperFeatureExtractor:
        """Build the extractor from its config (same as the constructor)."""
        return cls(cfg)

    def train(self, mode: bool = True) -> WhisperFeatureExtractor:
        """Keep eval mode: a parent's ``.train()`` must not switch on Whisper's dropout or layer drop."""
        return super().train(False)

    def extra_repr(self) -> str:
        """Where the weights came from and the feature geometry, for ``print(module)``."""
        return f"source={self.source}, B={self.num_hidden_states}, C={self.hidden_size}, rate={self.frame_rate} Hz"

    # ---- geometry --------------------------------------------------------------------------------------

    @property
    def num_hidden_states(self) -> int:
        """B: the embedding output plus one output per encoder block (13 for Whisper-small)."""
        return self.encoder.config.encoder_layers + 1

    @property
    def hidden_size(self) -> int:
        """C: width of each hidden state (768 for Whisper-small)."""
        return self.encoder.config.d_model

    @property
    def sample_rate(self) -> int:
        """Sample rate the front end expects (16000 Hz); :meth:`encode` takes nothing else."""
        return int(self.front_end.sampling_rate)

    @property
    def samples_per_frame(self) -> int:
        """Audio samples per feature frame: mel hop (160) times the encoder's convolution strides (2)."""
        return int(self.front_end.hop_length) * self.encoder.conv1.stride[0] * self.encoder.conv2.stride[0]

    @property
    def frame_rate(self) -> float:
        """Feature frames per second (50.0 Hz)."""
        return self.sample_rate / self.samples_per_frame

    @property
    def chunk_samples(self) -> int:
        """Samples in one encoder window (30 s at 16 kHz = 480000)."""
        return int(self.front_end.n_samples)

    @property
    def device(self) -> torch.device:
        """Device the encoder currently lives on (follows ``.to()``)."""
        return self.encoder.conv1.weight.device

    def num_frames(self, num_samples: int) -> int:
        """Feature frames L for a 16 kHz waveform of ``num_samples`` samples: ``ceil(num_samples / 320)``."""
        return -(-int(num_samples) // self.samples_per_frame)

    # ---- encoding --------------------------------------------------------------------------------------

    @torch.no_grad()
    def log_mel(self, chunks: Sequence[np.ndarray]) -> torch.Tensor:
        """Log-mel spectrograms of up-to-30 s chunks, each zero-padded to 30 s.

        Args:
            chunks: 1-D float32 16 kHz waveforms, each at most :attr:`chunk_samples` long.

        Returns:
            Float tensor ``[len(chunks), num_mel_bins, 3000]`` on :attr:`device` in the encoder dtype.
        """
        for chunk in chunks:
            if chunk.ndim != 1 or not 0 < chunk.shape[0] <= self.chunk_samples:
                raise ValueError(
                    f"log_mel expects 1-D chunks of 1..{self.chunk_samples} samples, got shape {chunk.shape}"
                )
        device = self.device
        mel = self.front_end(
            list(chunks),
            sampling_rate=self.sample_rate,
            padding="max_length",
            max_length=self.chunk_samples,
            return_tensors="pt",
            device=str(device),
        ).input_features
        return mel.to(device=device, dtype=self.encoder.conv1.weight.dtype)

    @torch.no_grad()
    def hidden_states(self, mel: torch.Tensor) -> torch.Tensor:
        """Run the encoder on 30 s log-mel windows and stack every hidden state.

        Args:
            mel: ``[N, num_mel_bins, 3000]`` log-mel windows, as from :meth:`log_mel`.

        Returns:
            ``[N, 1500, B, C]`` in the encoder dtype: index 0 of the B axis is the embedding output
            (convolutions + positions), index ``k`` the output of block ``k``; the last one carries the
            encoder's final layer norm, as transformers reports it.
        """
        out = self.encoder(mel, output_hidden_states=True)
        return torch.stack(out.hidden_states, dim=2)

    @torch.no_grad()
    def encode(self, audio: np.ndarray | torch.Tensor, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
        """Whisper features of a mono waveform of any length.

        The waveform must already be at 16 kHz: the project has one resampler and one downmix
        (``data_prep.audio.decode_audio`` / ``resample_audio``), so features always see the audio the
        shards store and SyncNet scores. The waveform is cut
        into 30 s chunks, encoded :attr:`cfg.batch_chunks <WhisperFeaturesConfig.batch_chunks>` chunks
        per forward, and each chunk's 1500 frames are trimmed to ``ceil(chunk_samples / 320)``, the
        frames that cover real audio, after encoding.

        Args:
            audio: ``[num_samples]`` mono waveform, floating point in [-1, 1] (numpy or torch).
            sample_rate: Sample rate of ``audio`` in Hz; must be :attr:`sample_rate` (16000).

        Returns:
            float32 ``[L, B, C]`` on the CPU, ``L = ceil(num_samples / 320)`` (50 Hz). Features
            go to shards, and long audio would not fit on an accelerator, hence the CPU.

        Raises:
            ValueError: ``audio`` is empty, not 1-D, not floating point or has NaN/inf samples, or
                ``sample_rate`` is not 16000.
            TypeError: ``audio`` is neither a numpy array nor a torch tensor.
        """
        wave = self._checked_waveform(audio, sample_rate)
        step = self.chunk_samples
        chunks = [wave[start : start + step] for start in range(0, wave.shape[0], step)]
        out = torch.empty(self.num_frames(wave.shape[0]), self.num_hidden_states, self.hidden_size)
        row = 0
        for first in range(0, len(chunks), self.cfg.batch_chunks):
            batch = chunks[first : first + self.cfg.batch_chunks]
            stacked = self.hidden_states(self.log_mel(batch))
            for chunk, feats in zip(batch, stacked):
                # Encode the full padded window and trim afterwards: Whisper was trained on 30 s windows
                # only, so the frames of real audio are those of the padded window, not of a shorter input.
                frames = self.num_frames(chunk.shape[0])
                out[row : row + frames] = feats[:frames].float().cpu()
                row += frames
        assert row == out.shape[0]
        return out

    def forward(self, audio: np.ndarray | torch.Tensor, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
        """Same as :meth:`encode`: ``[num_samples]`` waveform → float32 ``[L, B, C]``."""
        return self.encode(audio, sample_rate)

    def _checked_waveform(self, audio: np.ndarray | torch.Tensor, sample_rate: int) -> np.ndarray:
        """Validate a 16 kHz waveform and return it as contiguous float32 numpy."""
        if isinstance(audio, torch.Tensor):
            if not audio.is_floating_point():
                raise ValueError(f"audio must be floating point in [-1, 1], got dtype {audio.dtype}")
            wave = audio.detach().to("cpu", torch.float32).numpy()
        elif isinstance(audio, np.ndarray):
            if audio.dtype.kind != "f":
                raise ValueError(
                    f"audio must be floating point in [-1, 1], got dtype {audio.dtype} "
                    "(scale integer PCM first, e.g. int16 / 32768)"
                )
            wave = audio.astype(np.float32, copy=False)
        else:
            raise TypeError(f"audio must be a numpy array or torch tensor, got {type(audio).__name__}")
        if wave.ndim != 1:
            raise ValueError(f"audio must be a 1-D mono waveform [num_samples], got shape {tuple(wave.shape)}")
        if wave.shape[0] == 0:
            raise ValueError("audio is empty (0 samples)")
        bad = int(np.count_nonzero(~np.isfinite(wave)))
        if bad:
            raise ValueError(f"audio has {bad} non-finite samples (NaN or inf) out of {wave.shape[0]}")
        if int(sample_rate) != sample_rate or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
        if sample_rate != self.sample_rate:
            raise ValueError(
                f"audio must be {self.sample_rate} Hz, got sample_rate={sample_rate}: decode or resample it with "
                "data_prep.audio.decode_audio / resample_audio (the project's one resampler) first"
            )
        return np.ascontiguousarray(wave, dtype=np.float32)

    # ---- persistence -----------------------------------------------------------------------------------

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write a folder that ``WhisperFeaturesConfig(path=folder)`` loads back with identical outputs.

        The layout is the one of ``openai/whisper-small``: ``config.json``, ``model.safetensors`` with the
        encoder tensors under their checkpoint names (``model.encoder.*``) and ``preprocessor_config.json``.
        Only the encoder is written (no decoder weights: this module never uses them).

        Args:
            folder: Destination; created if missing, existing files of the same names are replaced.

        Returns:
            The folder as a ``Path``.
        """
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.encoder.config.save_pretrained(folder)
        state = {
            f"model.encoder.{name}": tensor.detach().to("cpu").contiguous()
            for name, tensor in self.encoder.state_dict().items()
        }
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
        self.front_end.save_pretrained(folder)
        return folder
