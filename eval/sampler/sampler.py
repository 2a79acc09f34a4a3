"""The Euler sampler of the audio-conditioned DiT (EditYourself §3.1, §3.4).

``x_{t_{i+1}} = x_{t_i} − (t_i − t_{i+1}) · v_θ(x_{t_i}, t_i, c)`` over ``num_steps`` shifted flow times
(:func:`trainer.objectives.timesteps.sampling_times`). The initial state, per-token times, RoPE
coordinates, reference tokens and audio routing come from the trainer's own functions
(:mod:`trainer.objectives.flow_matching`, :mod:`trainer.model.dit_inputs`), so the first model input of
a sample equals the training input at ``t = 1`` for the same latents, noise and conditions (tested).

Tokens outside the mask ``M`` are clean conditions at time 0 and never change; only masked tokens move.
Classifier-free guidance combines up to three passes:
``v = v(∅, ∅) + s_text (v(text, ∅) − v(∅, ∅)) + s_audio (v(text, audio) − v(text, ∅))`` (text, audio)
with the audio null being zeroed features (as in training dropout) and the text null the empty caption;
a scale of 1 skips the passes it would need.

With ``teacache_threshold > 0`` the non-shifting middle steps reuse the DiT blocks' residual while their
modulated input barely changes (:mod:`eval.sampler.teacache`), one cache per block window and guidance pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from eval.sampler.config import SamplerConfig
from eval.sampler.prefix_conditioning import progressive_prefix_denoise
from eval.sampler.tapsf import TAPSFConfig, TAPSFSchedule, blockwise_velocity, shifting_steps, slice_block
from eval.sampler.teacache import TeaCache
from trainer.model.dit import TalkingHeadDiT
from trainer.model.dit_inputs import DiTInputs, assemble_dit_inputs, frame_references
from trainer.model.sequence import ReferenceTokens, patchify, unpatchify
from trainer.objectives.flow_matching import noise_tokens
from trainer.objectives.timesteps import sampling_times


@dataclass
class SampleInputs:
    """Everything one sampling run conditions on (latents already normalised as in training).

    Attributes:
        latents: Clean latents ``[B, C, T, H, W]``: the source video (V2V), the first frame in latent frame 0
            (I2V; the rest is ignored under ``M = 1``) or zeros (T2V).
        mask: ``M`` per latent token ``[B, T, H, W]`` in {0, 1}: 1 = generated (:mod:`eval.sampler.modes`).
        fps: ``[B]``.
        windows: Eq. 3 audio windows of the whole video ``[B, F, W, Bl, C]``; ``None`` for a DiT without audio
            adapter (a base model), which samples without audio and without audio guidance.
        window_valid: ``[B, F, W]`` (``None`` with ``windows``).
        text: Caption embeddings ``[B, L, C_text]``; ``text_mask`` ``[B, L]``.
        null_text: Empty-caption embeddings ``[B, L', C_text]``; ``null_text_mask`` ``[B, L']``.
        references: Clean reference token sets (identity face references, frame references).
    """

    latents: torch.Tensor
    mask: torch.Tensor
    fps: torch.Tensor
    windows: torch.Tensor | None
    window_valid: torch.Tensor | None
    text: torch.Tensor
    text_mask: torch.Tensor
    null_text: torch.Tensor
    null_text_mask: torch.Tensor
    references: Sequence[ReferenceTokens] = ()

    @property
    def grid(self) -> tuple[int, int, int]:
        """``(T, H, W)`` of the latent grid."""
        return tuple(self.latents.shape[2:])  # type: ignore[return-value]


class EulerSampler:
    """Samples latents from a :class:`TalkingHeadDiT` with the trainer's input assembly.

    Args:
        dit: The DiT with its audio adapter (and LoRA) loaded, in eval mode.
        cfg: Sampler settings.
        timestep_loc: The training law's location, used when ``cfg.timestep_loc`` is ``None``.
    """

    def __init__(self, dit: TalkingHeadDiT, cfg: SamplerConfig, timestep_loc: float = 2.05):
        self.dit = dit
        self.cfg = cfg
        loc = cfg.timestep_loc if cfg.timestep_loc is not None else timestep_loc
        self.times = sampling_times(cfg.num_steps, loc)
        self.teacache = TeaCache(dit.transformer, cfg.teacache_threshold) if cfg.teacache_threshold > 0 else None
        # Steps whose block windows stay put (TAPSF's middle steps): the only ones TeaCache may serve.
        self.cacheable = [not s for s in shifting_steps(cfg.num_steps, cfg.unshifted_fraction)]
        self._window: tuple | None = None  # the block window of the current DiT calls, when cacheable
        # (text_on, audio_on) of the DiT call under way: hooks on the DiT (inversion editing) read it.
        self.guidance_pass: tuple[bool, bool] = (True, True)

    # ---------------------------------------------------------------- inputs
    def initial_state(self, inputs: SampleInputs, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 5 at ``t = t_0 = 1``: the tokens the first step reads and their times.

        Args:
            inputs: The conditions.
            noise: ``ε`` per video token ``[B, T·H·W, C]``.

        Returns:
            ``(x [B, T·H·W, C], per-token times [B, T·H·W])``.
        """
        bsz = inputs.latents.shape[0]
        t0 = torch.full((bsz,), float(self.times[0]), device=noise.device)
        return noise_tokens(patchify(inputs.latents), noise, t0, inputs.mask.flatten(1).to(noise.device))

    def model_inputs(
        self,
        inputs: SampleInputs,
        x: torch.Tensor,
        t: float | torch.Tensor,
        audio_on: bool = True,
        frame_offset: int = 0,
        grid: tuple[int, int, int] | None = None,
        mask: torch.Tensor | None = None,
        references: Sequence[ReferenceTokens] | None = None,
    ) -> DiTInputs:
        """The DiT input at flow time ``t`` for video tokens ``x`` (a block of them under TAPSF).

        Args:
            inputs: The conditions.
            x: Current video tokens ``[B, N, C]``.
            t: Current flow time, or per token ``[B, N]`` (prefix conditioning: 0 on the clean prefix).
            audio_on: ``False`` gives the audio-null pass (zeroed windows, as training's audio dropout).
            frame_offset: Global latent index of the first frame of ``x``.
            grid: ``(T, H, W)`` of ``x``; default the whole video.
            mask: ``M`` of ``x`` ``[B, N]``; default the whole video's.
            references: Reference token sets; default ``inputs.references``.

        Returns:
            The DiT inputs (per-token time ``t·M``, Eq. 6 gate ``M``).
        """
        m = (inputs.mask.flatten(1) if mask is None else mask).to(x.device, torch.float32)
        t_tok = t * m
        windows = inputs.windows if audio_on or inputs.windows is None else torch.zeros_like(inputs.windows)
        refs = inputs.references if references is None else references
        return assemble_dit_inputs(
            x, t_tok, m, grid or inputs.grid, inputs.fps, windows, inputs.window_valid, refs, frame_offset
        )

    # -------------------------------------------------------------- velocity
    def guided_velocity(self, inputs: SampleInputs, build: Callable[[bool], DiTInputs]) -> torch.Tensor:
        """Classifier-free guided velocity of the video tokens ``[B, N, C]``.

        Args:
            inputs: The conditions (text and null text).
            build: ``build(audio_on)`` gives the DiT inputs for the current tokens.
        """
        g = self.cfg.guidance

        def run(dit_in: DiTInputs, text_on: bool, audio_on: bool) -> torch.Tensor:
            self.guidance_pass = (text_on, audio_on)
            text = inputs.text if text_on else inputs.null_text
            mask = inputs.text_mask if text_on else inputs.null_text_mask
            if self.teacache is None:
                out = self.dit(dit_in.tokens, dit_in.timestep, text, mask, dit_in.coords, dit_in.audio)
            else:  # each guidance pass of each window sees other inputs: a cache of its own
                key = None if self._window is None else (*self._window, text_on, audio_on)
                with self.teacache.pass_key(key):
                    out = self.dit(dit_in.tokens, dit_in.timestep, text, mask, dit_in.coords, dit_in.audio)
            return out[:, dit_in.num_ref :]

        full_in = build(True)
        v = run(full_in, True, True)
        audio_scale = 1.0 if inputs.windows is None else g.audio  # no audio, no audio guidance
        if audio_scale == 1.0 and g.text == 1.0:
            return v
        no_audio_in = build(False)
        v_text = v if inputs.windows is None else run(no_audio_in, True, False)  # text on, audio null
        guided = v_text + audio_scale * (v - v_text)
        if g.text != 1.0:
            v_null = run(no_audio_in, False, False)
            guided = guided + (g.text - 1.0) * (v_text - v_null)
        return guided

    # ---------------------------------------------------------------- sample
    @torch.no_grad()
    def sample(
        self,
        inputs: SampleInputs,
        noise: torch.Tensor | None = None,
        velocity: Callable[[SampleInputs, torch.Tensor, float, int], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Run the Euler sampler.

        Args:
            inputs: The conditions.
            noise: Initial ``ε`` ``[B, T·H·W, C]``; default drawn from ``cfg.seed``.
            velocity: ``velocity(inputs, x, t, step)`` → ``[B, T·H·W, C]``; default one pass over the whole
                video (:meth:`full_velocity`). TAPSF passes its blockwise version.

        Returns:
            Clean latents ``[B, C, T, H, W]``; tokens outside ``M`` equal ``inputs.latents`` exactly.
        """
        x0 = patchify(inputs.latents)
        if noise is None:
            gen = torch.Generator(device=x0.device).manual_seed(self.cfg.seed)
            noise = torch.randn(x0.shape, generator=gen, device=x0.device, dtype=x0.dtype)
        x, _ = self.initial_state(inputs, noise)
        self._window = None
        m = inputs.mask.flatten(1).to(x.device)[..., None] > 0
        frames = inputs.grid[0]
        long = 0 < self.cfg.block_size < frames
        if velocity is None and long and self.cfg.long_video == "prefix":
            return self.sample_with_prefixes(inputs, x)
        if velocity is None:
            velocity = self.tapsf_velocity(frames) if long else self.full_velocity
        with self._teacache():
            for i in range(self.cfg.num_steps):
                t, t_next = float(self.times[i]), float(self.times[i + 1])
                v = velocity(inputs, x, t, i)
                # Unmasked tokens are conditions at time 0: they keep their clean values exactly.
                x = torch.where(m, x - (t - t_next) * v.to(x.dtype), x0)
        return unpatchify(x, *inputs.grid)

    @contextmanager
    def _teacache(self) -> Iterator[None]:
        """TeaCache around one sample (fresh caches; the transformer's blocks are restored after)."""
        if self.teacache is None:
            yield
            return
        self.teacache.reset()
        with self.teacache.active():
            yield

    def sample_with_prefixes(self, inputs: SampleInputs, x: torch.Tensor) -> torch.Tensor:
        """AnyExpress progressive prefix conditioning (§3.3): one window after another.

        Each window starts from the previous window's last ``prefix_frames`` clean frames; later windows
        are aligned to the first one's statistics.

        Args:
            inputs: T2V or I2V conditions (every frame after the first generated).
            x: Initial tokens ``[B, T·H·W, C]`` (:meth:`initial_state`).

        Returns:
            Clean latents ``[B, C, T, H, W]``.

        Raises:
            ValueError: The mask keeps tokens after the first frame (V2V): alignment would alter them.
        """
        frames, grid_h, grid_w = inputs.grid
        if not bool((inputs.mask[:, 1:] > 0).all()):
            raise ValueError("long_video='prefix' needs every frame after the first generated (T2V/I2V); use 'tapsf'")
        mask = inputs.mask.flatten(1).to(x.device)
        tokens_per_frame = grid_h * grid_w

        def fn(latents: torch.Tensor, idx: torch.Tensor, frame_t: torch.Tensor) -> torch.Tensor:
            lo, n = int(idx[0]), idx.numel()
            m = slice_block(mask, idx, frames)
            t_tok = frame_t.repeat_interleave(tokens_per_frame, dim=1).to(m.dtype)  # [B, n·H·W]
            tokens = patchify(latents)

            def build(audio_on: bool) -> DiTInputs:
                return self.model_inputs(inputs, tokens, t_tok, audio_on, lo, (n, grid_h, grid_w), m)

            v = self.guided_velocity(inputs, build) * m[..., None]  # conditions (I2V frame 0) do not move
            return unpatchify(v, n, grid_h, grid_w)

        out = progressive_prefix_denoise(
            unpatchify(x, frames, grid_h, grid_w),
            self.times.to(torch.float32),
            fn,
            window=self.cfg.block_size,
            prefix_frames=self.cfg.prefix_frames,
            anchor_alignment=self.cfg.anchor_alignment,
        )
        keep = inputs.mask[:, None].expand_as(out) == 0
        return torch.where(keep, inputs.latents, out)

    @staticmethod
    def block_frame_references(inputs: SampleInputs, start: int, end: int) -> list[ReferenceTokens]:
        """Forward–backward RoPE references of a block ``[start, end]`` (inclusive) that is fully synthetic.

        Clean frames are those with any token not generated (V2V-kept or first-frame conditions); their
        source latents are the reference content. A block holding a clean frame needs none.

        Returns:
            ``[]`` or one set with the closest clean frame before and/or after the block.
        """
        synthetic = (inputs.mask > 0).flatten(2).all(dim=2).all(dim=0)  # [T]: every token of the frame generated
        if not bool(synthetic[start : end + 1].all()):
            return []
        clean = torch.nonzero(~synthetic).flatten().tolist()
        past = [f for f in clean if f < start]
        future = [f for f in clean if f > end]
        chosen = ([past[-1]] if past else []) + ([future[0]] if future else [])
        if not chosen:
            return []
        source = torch.tensor(chosen, device=inputs.latents.device)
        return [frame_references(inputs.latents[:, :, source], source, start, end, inputs.fps)]

    def tapsf_velocity(self, num_frames: int):
        """TAPSF (paper §3.4): per step, the guided velocity of every block, averaged where blocks overlap.

        Each block is a contiguous run of at most ``block_size`` latent frames at global positions (RoPE
        and audio routing use global frame indices); its tokens, times and mask are sliced from the
        whole video's; every block carries the same reference tokens.

        Returns:
            ``velocity(inputs, x, t, step)`` for :meth:`sample`.
        """
        schedule = TAPSFSchedule(
            num_frames,
            self.cfg.num_steps,
            TAPSFConfig(self.cfg.block_size, self.cfg.shift, self.cfg.unshifted_fraction),
        )

        def velocity(inputs: SampleInputs, x: torch.Tensor, t: float, step: int) -> torch.Tensor:
            frames, grid_h, grid_w = inputs.grid
            mask = inputs.mask.flatten(1)

            def block(latents: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
                lo, n = int(idx[0]), idx.numel()
                tokens = patchify(latents)
                m = slice_block(mask, idx, frames)
                refs = list(inputs.references)
                if self.cfg.frame_references:
                    refs += self.block_frame_references(inputs, lo, lo + n - 1)

                def build(audio_on: bool) -> DiTInputs:
                    return self.model_inputs(inputs, tokens, t, audio_on, lo, (n, grid_h, grid_w), m, refs)

                # A window that has not moved since the last step may reuse its cached block residual.
                self._window = (lo, n) if not schedule.shifting[step] else None
                return unpatchify(self.guided_velocity(inputs, build), n, grid_h, grid_w)

            v = blockwise_velocity(unpatchify(x, frames, grid_h, grid_w), schedule.blocks(step), block)
            return patchify(v)

        return velocity

    def full_velocity(self, inputs: SampleInputs, x: torch.Tensor, t: float, step: int) -> torch.Tensor:
        """Guided velocity of the whole video in one pass ``[B, T·H·W, C]``."""
        self._window = ("full",) if self.cacheable[step] else None
        return self.guided_velocity(inputs, lambda audio_on: self.model_inputs(inputs, x, t, audio_on))
