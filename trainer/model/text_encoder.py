"""The frozen T5 text encoder LTX-Video conditions on, with a cache of caption embeddings."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn
from transformers import AutoTokenizer, ByT5Tokenizer, T5Config, T5EncoderModel

from trainer.config.schema import TextEncoderConfig
from trainer.model.backbone import LTX_SOURCE_HINT
from trainer.model.weights import require_file


class TextEncoder(nn.Module):
    """Captions to ``[B, L, caption_channels]`` embeddings and ``[B, L]`` masks, as LTX pipelines do.

    The encoder is frozen, so the embedding of each distinct caption is computed once and kept in an
    LRU cache of ``cfg.cache_size`` captions.

    Args:
        cfg: Source and tokenisation settings.
    """

    def __init__(self, cfg: TextEncoderConfig):
        super().__init__()
        self.max_length = cfg.max_length
        self.cache_size = cfg.cache_size
        if cfg.source == "random":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.init_seed)
                self.encoder = T5EncoderModel(T5Config(**cfg.arch))
            # Byte-level tokenisation needs no vocabulary file, which a random tiny model has no use for.
            self.tokenizer = ByT5Tokenizer()
        elif cfg.source == "diffusers":
            root = Path(cfg.path)
            enc_dir = root / cfg.subfolder if cfg.subfolder else root
            tok_dir = root / cfg.tokenizer_subfolder if cfg.tokenizer_subfolder else root
            require_file(enc_dir / "config.json", LTX_SOURCE_HINT + " (text_encoder/ holds T5-XXL)")
            if not list(enc_dir.glob("*.safetensors")) and not list(enc_dir.glob("*.bin")):
                raise FileNotFoundError(f"missing weight file model*.safetensors in {enc_dir}; {LTX_SOURCE_HINT}")
            if not tok_dir.is_dir():
                raise FileNotFoundError(f"missing tokenizer folder {tok_dir}; {LTX_SOURCE_HINT}")
            self.encoder = T5EncoderModel.from_pretrained(enc_dir, local_files_only=True, torch_dtype=torch.float32)
            self.tokenizer = AutoTokenizer.from_pretrained(tok_dir, local_files_only=True)
        else:
            raise ValueError(f"model.text_encoder.source={cfg.source!r}: expected random or diffusers")
        self.encoder.requires_grad_(False)
        self.encoder.eval()
        self._cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    def save_pretrained(self, encoder_dir: str | Path, tokenizer_dir: str | Path) -> None:
        """Write the encoder and its tokenizer as transformers folders (``text_encoder/``, ``tokenizer/``).

        A random encoder saved this way loads back with ``source=diffusers`` as the same network; the tokenizer
        records ``max_length`` as its ``model_max_length``.
        """
        self.encoder.save_pretrained(encoder_dir, safe_serialization=True)
        # The prompt length the model was trained with travels with the tokenizer (inference pads to it).
        self.tokenizer.model_max_length = self.max_length
        self.tokenizer.save_pretrained(tokenizer_dir)

    @property
    def hidden_size(self) -> int:
        """Channels of the embeddings (must equal the DiT's ``caption_channels``)."""
        return self.encoder.config.d_model

    @torch.no_grad()
    def _encode_uncached(self, captions: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        tok = self.tokenizer(
            captions,
            padding="max_length",
            max_length=self.max_length,
            truncation=True,
            add_special_tokens=True,
            return_tensors="pt",
        )
        ids = tok.input_ids.to(device)
        mask = tok.attention_mask.to(device)
        embeds = self.encoder(ids, attention_mask=mask)[0]
        return embeds, mask

    @torch.no_grad()
    def forward(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed captions.

        Args:
            captions: ``B`` strings.

        Returns:
            ``(embeds [B, max_length, C] float32, mask [B, max_length] int64)``.
        """
        device = next(self.encoder.parameters()).device
        todo = [c for c in dict.fromkeys(captions) if c not in self._cache]
        if todo:
            embeds, mask = self._encode_uncached(todo, device)
            for i, c in enumerate(todo):
                self._cache[c] = (embeds[i], mask[i])
        for c in captions:
            self._cache.move_to_end(c)
        out_e = torch.stack([self._cache[c][0].to(device) for c in captions])
        out_m = torch.stack([self._cache[c][1].to(device) for c in captions])
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return out_e.float(), out_m
