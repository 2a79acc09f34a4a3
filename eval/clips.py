"""Held-out clips from shards, as the sampler's one-clip batches, and sampling them in a mode.

Shared by ``eval.run``, validation during training, the lip-sync benchmark and the demo: clips are read and
checked against the training config whose features they must carry, resized to the size a model samples at,
turned into batches in the training loader's layout and sampled (V2V, I2V, T2V, inversion editing, or an edit
list).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

# torch, the media stack and the model load inside the functions that use them, so that entry points importing
# this answer `--help` and bad options without them.
if TYPE_CHECKING:
    from eval.sampler.sampler import EulerSampler
    from trainer.config.schema import TrainConfig
    from trainer.data.decode import ClipSample
    from trainer.model.talking_head import TalkingHeadModel


def read_clips(
    shards: str, cfg: TrainConfig, limit: int, key: str = "shards"
) -> list[tuple[ClipSample, np.ndarray, int]]:
    """The first ``limit`` clips of the shards with their 16 kHz audio, checked against a training config.

    Args:
        shards: Brace pattern, glob or list of shards.
        cfg: The training config whose feature layout the clips must carry.
        limit: Clips to read.
        key: The option that named the shards, for error messages.

    Raises:
        FileNotFoundError: No shard matches.
        ShardSampleError: A shard is not a readable tar file, or a sample breaks the schema (names the shard).
    """
    import tarfile

    import webdataset as wds

    from data_prep.audio import AUDIO_RATE, decode_audio
    from trainer.data.datamodule import feature_spec
    from trainer.data.decode import decode_sample
    from trainer.data.schema import ShardSampleError
    from trainer.data.shard_paths import expand_shards

    out = []
    for url in expand_shards(shards, key=key):
        try:
            for raw in wds.tarfile_samples([{"url": url}]):
                clip = decode_sample(raw, feature_spec(cfg))
                try:
                    audio = decode_audio(raw["audio.wav"])
                except ValueError as err:
                    raise ShardSampleError(clip.shard, clip.key, f"member 'audio.wav': {err}") from err
                out.append((clip, audio, AUDIO_RATE))
                if len(out) == limit:
                    return out
        except (tarfile.TarError, OSError, EOFError) as err:
            raise ShardSampleError(url, None, f"not a readable tar file ({' '.join(str(err).split())})") from err
    return out


def resize_clip(clip: ClipSample, size: tuple[int, int]) -> ClipSample:
    """The clip with its frames, reference frames and boxes resized to ``size`` (``(height, width)``)."""
    import dataclasses

    h, w = clip.frames.shape[1:3]
    if (h, w) == tuple(size):
        return clip
    scale = np.array([size[1] / w, size[0] / h, size[1] / w, size[0] / h], np.float32)
    return dataclasses.replace(
        clip,
        frames=resize_frames(clip.frames, size),
        ref_frames=resize_frames(clip.ref_frames, size),
        face_boxes=clip.face_boxes * scale,
        lower_face_boxes=clip.lower_face_boxes * scale,
        ref_lower_face_boxes=clip.ref_lower_face_boxes * scale,
    )


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``[F, H, W, 3]`` uint8 frames at ``size`` (``(height, width)``): area-averaged down, bicubic up."""
    import cv2

    h, w = frames.shape[1:3]
    if (h, w) == tuple(size):
        return frames
    interp = cv2.INTER_AREA if size[0] * size[1] < h * w else cv2.INTER_CUBIC
    return np.stack([cv2.resize(f, (size[1], size[0]), interpolation=interp) for f in frames])


def clip_batch(clip: ClipSample, num_refs: int, whisper: np.ndarray | None = None) -> dict:
    """A one-clip batch in the training loader's layout (the clip's resolution, every frame)."""
    from trainer.data.transforms import TrainingClip, collate_clips

    tc = TrainingClip(
        key=clip.key,
        frames=clip.frames,
        fps=clip.fps,
        frame_start=0,
        whisper=clip.whisper if whisper is None else whisper,
        lower_face_boxes=clip.lower_face_boxes,
        face_boxes=clip.face_boxes,
        ref_frames=clip.ref_frames[:num_refs],
        ref_lower_face_boxes=clip.ref_lower_face_boxes[:num_refs],
        caption=clip.caption or "",
        latents=None,
        num_frames=clip.frames.shape[0],
    )
    return collate_clips([tc])


def sample_clip(
    model: TalkingHeadModel,
    cfg: TrainConfig,
    sampler: EulerSampler,
    batch: dict,
    mode: str,
    v2v_mask: str,
    identity_refs: bool,
    seed: int,
    return_mask: bool = False,
    edit_batch: dict | None = None,
):
    """Sample one clip of ``batch`` in ``mode`` (``v2v``/``i2v``/``t2v``, or ``invert_edit``).

    Args:
        model: The model (:func:`trainer.stage_model.load_trained_model`).
        cfg: The training config it was built from.
        sampler: A sampler over ``model.dit``.
        batch: A one-clip batch (:func:`clip_batch`).
        mode: ``v2v``, ``i2v`` or ``t2v``; ``invert_edit``: ``batch`` inverted with its own audio, then denoised
            with ``edit_batch``'s (:func:`eval.sampler.inversion.invert_edit`, the V2V mask ``v2v_mask``).
        v2v_mask: ``lip``, ``face`` or ``head``.
        identity_refs: Prepend the identity reference tokens.
        seed: Seed of the posterior sample (the sampler's noise comes from its own seed).
        return_mask: Also return the generated-token mask.
        edit_batch: ``invert_edit`` only: the same clip with the new audio features.

    Returns:
        uint8 frames ``[F, H, W, 3]``; with ``return_mask``, also the generated-token mask ``[T, h, w]``
        (1 = generated), for pasting the generated region back into source frames (:mod:`eval.sampler.paste`).
    """
    import torch

    from eval.sampler.batch import sample_inputs_from_batch
    from eval.sampler.inversion import invert_edit
    from eval.sampler.video_out import decode_latents
    from trainer.data.transforms import batch_to_device

    with torch.no_grad():
        dev = model.device
        batch = batch_to_device(batch, dev)
        latents, refs = model.encode_latents(batch, torch.Generator(device=dev).manual_seed(seed))
        if mode == "invert_edit":
            if edit_batch is None:
                raise ValueError("mode 'invert_edit' needs edit_batch, the clip with its new audio")
            source = sample_inputs_from_batch(model, cfg, batch, latents, refs, "v2v", v2v_mask, identity_refs)
            edit = batch_to_device(edit_batch, dev)
            inputs = sample_inputs_from_batch(model, cfg, edit, latents, refs, "v2v", v2v_mask, identity_refs)
            out = invert_edit(sampler, source, inputs)
        else:
            inputs = sample_inputs_from_batch(model, cfg, batch, latents, refs, mode, v2v_mask, identity_refs)
            out = sampler.sample(inputs)
        frames = decode_latents(model.vae, out)[0]
    return (frames, inputs.mask[0].cpu()) if return_mask else frames


def sample_edited_clip(
    model: TalkingHeadModel,
    cfg: TrainConfig,
    sampler: EulerSampler,
    batch: dict,
    edits: list,
    audio: np.ndarray,
    sample_rate: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Apply a visual-dialog edit list to one clip and sample it.

    Args:
        model: The model (:func:`trainer.stage_model.load_trained_model`).
        cfg: The training config it was built from.
        sampler: The sampler.
        batch: A one-clip batch (:func:`clip_batch`).
        edits: :class:`eval.sampler.edit_plan.Edit` list on the clip's timeline.
        audio: The clip's waveform ``[S]``.
        sample_rate: Its rate.
        seed: Seed of the posterior sample (the sampler's noise comes from its own seed).

    Returns:
        ``(frames [F', H, W, 3] uint8, driving audio [S'])`` of the edited clip.
    """
    import torch

    from eval.sampler.batch import edited_sample_inputs
    from eval.sampler.edit_audio import edited_track
    from eval.sampler.video_out import decode_latents
    from trainer.data.transforms import batch_to_device

    with torch.no_grad():
        dev = model.device
        batch = batch_to_device(batch, dev)
        latents, refs = model.encode_latents(batch, torch.Generator(device=dev).manual_seed(seed))
        inputs, _, frames_map = edited_sample_inputs(model, cfg, batch, latents, refs, edits)
        frames = decode_latents(model.vae, sampler.sample(inputs))[0]
    return frames, edited_track(audio, frames_map, sample_rate, float(batch["fps"][0]))
