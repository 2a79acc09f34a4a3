"""Evaluation metrics for generated talking-head videos, and :class:`MetricSuite` running them all.

Video convention (every module): ``[T, H, W, 3]`` RGB, uint8 in [0, 255] or float in [0, 1]
(:mod:`eval.metrics.video`). Audio: ``[S]`` mono, float in [-1, 1] or int16.

=====================  ==========================================  =====================================
name                   what                                        module / weights
=====================  ==========================================  =====================================
``psnr``, ``ssim``     per-frame vs ground truth, mean             :mod:`~eval.metrics.pixel`
``lpips``              LPIPS v0.1 AlexNet, per-frame mean          :mod:`~eval.metrics.perceptual`, alexnet
``fid``                Inception pool3 Fréchet distance (frames)   :mod:`~eval.metrics.fid`, FID Inception
``fvd``                I3D Fréchet distance (16-frame clips)       :mod:`~eval.metrics.fvd`, I3D
``csim``               ArcFace cosine, frame t vs ground truth t   :mod:`~eval.metrics.identity`, ArcFace
``face_sim``           ArcFace cosine vs one reference image       :mod:`~eval.metrics.identity`, ArcFace
``clip_i``             CLIP image cosine of face crops vs ref.     :mod:`~eval.metrics.clip_image`, CLIP
``cpbd``               CPBD no-reference sharpness, frame mean     :mod:`~eval.metrics.sharpness`
``niqe``               NIQE no-reference quality, frame mean       :mod:`~eval.metrics.niqe`, pristine model
``sync_c``, ``sync_d``  SyncNet confidence / distance              :mod:`~eval.metrics.sync`, SyncNet
``av_offset``          SyncNet AV offset (25 fps frames)           :mod:`~eval.metrics.sync`, SyncNet
                       ``sync_protocol=official``: the published   :mod:`~eval.metrics.sync_official`,
                       pipeline's file steps                       SyncNet + S3FD (or MediaPipe)
``delta_p``            AnyExpress pose diversity ΔP (generated)    :mod:`~eval.metrics.pose`
``m_lmd``, ``f_lmd``   mouth / full-face landmark distance         :mod:`~eval.metrics.landmarks`
``mouth_closed_silence``  share of silent frames with closed mouth  :mod:`~eval.metrics.mouth`
=====================  ==========================================  =====================================
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable

import numpy as np
import torch

from eval.config import SYNC_PROTOCOLS
from eval.metrics.frechet import frechet_distance_from_features
from eval.metrics.video import as_video
from eval.metrics.weights import WEIGHT_SOURCES, MetricWeights, require_file

__all__ = ["METRIC_NAMES", "WEIGHT_SOURCES", "MetricSuite", "MetricValues", "MetricWeights"]

METRIC_NAMES: tuple[str, ...] = (
    "psnr",
    "ssim",
    "lpips",
    "fid",
    "fvd",
    "csim",
    "face_sim",
    "clip_i",
    "cpbd",
    "niqe",
    "sync_c",
    "sync_d",
    "av_offset",
    "delta_p",
    "m_lmd",
    "f_lmd",
    "mouth_closed_silence",
)


class MetricValues(dict):
    """``name → value`` for every name in :data:`METRIC_NAMES` (``None`` when not computed).

    Attributes:
        skipped: ``name → reason`` for each metric left at ``None`` (missing weights, no face, shapes that a
            full-reference metric cannot compare, too few frames, ...).
    """

    def __init__(self) -> None:
        super().__init__(dict.fromkeys(METRIC_NAMES))
        self.skipped: dict[str, str] = {}


# Weight key → (module, loader(path, device)). Resolved when first used: ArcFace and S3FD need OpenCV and
# MediaPipe (the data extra), which a training run that validates without those weights never imports.
_LOADERS: dict[str, tuple[str, str]] = {
    "lpips_alexnet": ("eval.metrics.perceptual", "load_lpips"),
    "fid_inception": ("eval.metrics.fid", "load_fid_inception"),
    "i3d": ("eval.metrics.fvd", "load_i3d"),
    "syncnet": ("eval.metrics.sync", "load_syncnet"),
    "s3fd": ("eval.metrics.s3fd", "load_s3fd"),
    "arcface": ("eval.metrics.identity", "load_arcface"),
    "clip": ("eval.metrics.clip_image", "load_clip"),
    "niqe": ("eval.metrics.niqe", "load_pristine_model"),
}


class MetricSuite:
    """Every metric of :data:`METRIC_NAMES`, with each network read from its weight file once and kept.

    One suite serves a whole evaluation (every clip and mode of ``eval.run``, every validation of a training
    run): LPIPS, the FID Inception, I3D, SyncNet, S3FD and ArcFace are loaded on first use, not per clip.

    Args:
        weights: Weight-file paths; metrics whose file is absent are skipped (with the reason).
        device: Where the networks run.
        sync_protocol: ``direct`` (frames and audio in memory, :mod:`~eval.metrics.sync`) or ``official`` (the
            published pipeline's file steps, :mod:`~eval.metrics.sync_official`; S3FD faces with
            ``weights.s3fd``, MediaPipe without).

    Raises:
        ValueError: An unknown ``sync_protocol``.
    """

    def __init__(self, weights: MetricWeights, device: str | torch.device = "cpu", sync_protocol: str = "direct"):
        if sync_protocol not in SYNC_PROTOCOLS:  # an unknown protocol is an error, not a skipped metric
            raise ValueError(f"sync_protocol={sync_protocol!r}: expected one of {', '.join(SYNC_PROTOCOLS)}")
        self.weights = weights
        self.device = device
        self.sync_protocol = sync_protocol
        self._networks: dict[str, object] = {}
        self._failed: dict[str, Exception] = {}  # a missing or bad file is read once, not per clip
        # group -> metric -> (generated features, reference features), for set-level FID/FVD (:meth:`set_scores`)
        self._sets: dict[str, dict[str, tuple[list[np.ndarray], list[np.ndarray]]]] = {}

    def _frechet(self, name: str, group: str | None, generated: np.ndarray, reference: np.ndarray) -> float:
        """One video's Fréchet distance; its features are kept under ``group`` for the set-level value."""
        if group is not None:
            gen_sets, ref_sets = self._sets.setdefault(group, {}).setdefault(name, ([], []))
            gen_sets.append(generated)
            ref_sets.append(reference)
        return frechet_distance_from_features(generated, reference)

    def set_scores(self, group: str) -> tuple[dict[str, float], dict[str, str]]:
        """Set-level FID and FVD of every video scored under ``group``: one Fréchet distance over all their features.

        This is the FID/FVD of papers (generated set against reference set), unlike the mean of per-video values.

        Returns:
            ``(values, skipped)``: ``{"fid": …, "fvd": …}`` for the metrics whose features were kept, and the
            reason for each that was not computed.
        """
        values, skipped = {}, {}
        kept = self._sets.get(group, {})
        for name in ("fid", "fvd"):
            if name not in kept:
                skipped[name] = "no video of this row was scored with it (see the per-clip reasons)"
                continue
            gen, ref = kept[name]
            try:
                values[name] = frechet_distance_from_features(np.concatenate(gen), np.concatenate(ref))
            except ValueError as err:
                skipped[name] = str(err)
        return values, skipped

    def network(self, key: str):
        """The network of weight ``key`` (a key of :data:`WEIGHT_SOURCES`), loaded on the first call.

        Raises:
            FileNotFoundError: The weight file is not configured or absent (the message says where it comes from).
            ValueError: The file is not in the official layout.
        """
        if key in self._failed:
            raise self._failed[key]
        if key not in self._networks:
            module, loader = _LOADERS[key]
            try:
                path = require_file(getattr(self.weights, key), key)
                self._networks[key] = getattr(importlib.import_module(module), loader)(path, self.device)
            except (FileNotFoundError, ValueError) as exc:
                self._failed[key] = exc
                raise
        return self._networks[key]

    def __call__(
        self,
        generated: np.ndarray | torch.Tensor,
        reference: np.ndarray | torch.Tensor,
        audio: np.ndarray | None,
        fps: float,
        sample_rate: int = 16000,
        reference_image: np.ndarray | None = None,
        video_path: str | os.PathLike | None = None,
        group: str | None = None,
    ) -> MetricValues:
        """Every metric on one generated video and its reference, skipping (with the reason) what cannot run.

        Args:
            generated: ``[T, H, W, 3]`` generated video.
            reference: ``[T', H', W', 3]`` ground-truth / reference video. Full-reference metrics (PSNR, SSIM,
                LPIPS, CSIM, LMD) need the same shape as ``generated``; FID and FVD compare the two sets.
            audio: ``[S]`` mono driving audio of the generated video (``None``: audio metrics skipped).
            fps: Frame rate of ``generated`` (and of ``reference``).
            sample_rate: Rate of ``audio``.
            reference_image: ``[H, W, 3]`` identity image for FaceSim (default: the first reference frame).
            video_path: The generated video already saved with its audio (``official``: scored as is;
                otherwise ``generated`` and ``audio`` are written to a temporary mp4 first).
            group: Keep this video's FID and FVD features under ``group`` (a table row), for :meth:`set_scores`.

        Returns:
            :class:`MetricValues` (a dict with ``.skipped``).
        """
        # Imported here: landmarks and identity need MediaPipe and OpenCV (the data extra, see _LOADERS).
        from eval.metrics import (
            clip_image,
            identity,
            landmarks,
            mouth,
            niqe,
            perceptual,
            pixel,
            pose,
            sharpness,
            sync,
            sync_official,
        )
        from eval.metrics import fid as fid_mod
        from eval.metrics import fvd as fvd_mod

        gen, ref = as_video(generated, "generated"), as_video(reference, "reference")
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        if audio is not None:
            audio = np.asarray(audio)
            if audio.ndim != 1:
                raise ValueError(f"audio must be mono [S], got shape {list(audio.shape)}")
        out = MetricValues()
        same = gen.shape == ref.shape
        shape_reason = f"generated {list(gen.shape)} and reference {list(ref.shape)} differ in shape"

        def run(names: tuple[str, ...], fn: Callable[[], tuple | float | None], needs_same: bool = False) -> None:
            if needs_same and not same:
                for n in names:
                    out.skipped[n] = shape_reason
                return
            try:
                values = fn()
            except (FileNotFoundError, ValueError, ImportError) as exc:  # ImportError: an optional package missing
                for n in names:
                    out.skipped[n] = str(exc)
                return
            values = values if isinstance(values, tuple) else (values,)
            for n, v in zip(names, values):
                if v is None:
                    out.skipped.setdefault(n, "not defined for this input")
                out[n] = None if v is None else float(v)

        run(("psnr",), lambda: pixel.psnr(gen, ref), needs_same=True)
        run(("cpbd",), lambda: sharpness.cpbd_video(gen))
        run(("niqe",), lambda: niqe.niqe_video(gen, self.network("niqe")))
        run(("ssim",), lambda: pixel.ssim(gen, ref), needs_same=True)
        run(("lpips",), lambda: perceptual.lpips_distance(self.network("lpips_alexnet"), gen, ref), needs_same=True)

        def fid_features(videos: np.ndarray) -> np.ndarray:
            return fid_mod.inception_features(self.network("fid_inception"), fid_mod.frames_of(videos))

        def fvd_features(videos: np.ndarray) -> np.ndarray:
            return fvd_mod.I3DFeatures(self.network("i3d"))(fvd_mod.video_clips(videos, clips_per_video=None))

        run(("fid",), lambda: self._frechet("fid", group, fid_features(gen), fid_features(ref)))
        run(("fvd",), lambda: self._frechet("fvd", group, fvd_features(gen), fvd_features(ref)))

        lm_gen = landmarks.face_landmarks(gen)
        lm_ref = landmarks.face_landmarks(ref) if same else None
        run(("delta_p",), lambda: pose.delta_p(pose.head_pose(lm_gen, gen.shape[1:3])))
        for name, idx in (("m_lmd", landmarks.MOUTH_INDICES), ("f_lmd", landmarks.FACE_INDICES)):
            run(
                (name,),
                lambda idx=idx: landmarks.landmark_distance(lm_gen, lm_ref, idx, gen.shape[1:3], ref.shape[1:3]).value,
                needs_same=True,
            )
        if audio is None:
            for n in ("mouth_closed_silence", "sync_c", "sync_d", "av_offset"):
                out.skipped[n] = "no audio given"
        else:
            run(
                ("mouth_closed_silence",),
                lambda: mouth.mouth_closure_in_silence(lm_gen, audio, sample_rate, fps),
            )

            def _sync() -> tuple[float, float, float]:
                model = self.network("syncnet")
                if self.sync_protocol == "official":
                    s3fd = self.network("s3fd") if self.weights.s3fd is not None else None
                    s = sync_official.official_sync(model, s3fd, video_path, gen, audio, fps, sample_rate)
                else:
                    s = sync.sync_scores(model, gen, audio, fps, sample_rate)
                return s.confidence, s.min_dist, s.offset_frames

            run(("sync_c", "sync_d", "av_offset"), _sync)

        def _identity() -> tuple[float | None, float]:
            model = self.network("arcface")

            def embed(frames: np.ndarray, lm: np.ndarray) -> np.ndarray:
                crops, kept = identity.align_faces(frames, identity.five_points(lm))
                emb = np.full((frames.shape[0], 512), np.nan)
                if kept.size:
                    emb[kept] = identity.arcface_embeddings(model, crops)
                return emb

            emb_gen = embed(gen, lm_gen)
            if reference_image is None:
                ref_frame = ref[:1]
                ref_lm = lm_ref[:1] if lm_ref is not None else landmarks.face_landmarks(ref[:1])
            else:
                ref_frame = as_video(np.asarray(reference_image)[None], "reference_image")
                ref_lm = landmarks.face_landmarks(ref_frame)
            face = identity.face_sim(emb_gen, embed(ref_frame, ref_lm)[0])
            if not same:
                out.skipped["csim"] = shape_reason
                return None, face
            return identity.csim(emb_gen, embed(ref, lm_ref)), face

        run(("csim", "face_sim"), _identity)

        def _clip_i() -> float:
            encoder = self.network("clip")
            if reference_image is None:
                ref_frame = ref[0]
                ref_lm = lm_ref[0] if lm_ref is not None else landmarks.face_landmarks(ref[:1])[0]
            else:
                ref_frame = as_video(np.asarray(reference_image)[None], "reference_image")[0]
                ref_lm = landmarks.face_landmarks(ref_frame[None])[0]
            return clip_image.clip_i(encoder, gen, lm_gen, ref_frame, ref_lm)

        run(("clip_i",), _clip_i)
        return out
