"""Phase-shifted audio windows per video frame (EditYourself Eq. 3).

For video frame ``i`` and window slot ``n = 0 … W-1`` the fractional audio index is
``u_n = i · f_a / f_v + (n − (W − 1) / 2)``; the window value is the linear interpolation of the
feature sequence between ``⌊u_n⌋`` and ``⌊u_n⌋ + 1``. The features keep their own rate ``f_a`` — they
are never resampled to the video rate — so one window covers the same audio duration at any fps.
"""

from __future__ import annotations

import torch


def sample_audio_windows(
    features: torch.Tensor,
    lengths: torch.Tensor,
    fps: torch.Tensor,
    num_frames: int,
    window: int,
    feature_rate: float,
    first_frame: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather one window of ``window`` interpolated audio features per video frame.

    Args:
        features: Audio features ``[B, L, Bl, C]`` at ``feature_rate`` Hz (rows beyond a sample's
            length are padding and never read).
        lengths: Valid feature rows per sample ``[B]`` (int).
        fps: Video frame rate per sample ``[B]`` (float, any value in [24, 60] and beyond).
        num_frames: Video frames ``F`` to produce windows for.
        window: Slots per window ``W``.
        feature_rate: Audio feature rate ``f_a`` in Hz (Whisper: 50).
        first_frame: ``[B]`` index ``i`` of the first produced frame in the video the features start
            with (a clip cut from a longer stored clip); 0 by default.

    Returns:
        ``(windows, valid)``: ``windows`` ``[B, F, W, Bl, C]`` in the dtype of ``features``, and
        ``valid`` ``[B, F, W]`` bool, false where ``u_n`` falls outside ``[0, length − 1]``; such
        slots are zero (padded) and masked.
    """
    if features.ndim != 4:
        raise ValueError(f"features must be [B, L, Bl, C], got shape {tuple(features.shape)}")
    bsz, max_len, n_layers, dim = features.shape
    device = features.device
    # Index arithmetic in float64: u reaches thousands for long clips and must stay exact to 1e-9.
    frame = torch.arange(num_frames, device=device, dtype=torch.float64)[None, :]
    if first_frame is not None:
        frame = frame + first_frame.to(device=device, dtype=torch.float64)[:, None]
    slot = torch.arange(window, device=device, dtype=torch.float64) - (window - 1) / 2.0
    step = feature_rate / fps.to(device=device, dtype=torch.float64)  # audio rows per video frame [B]
    u = frame[:, :, None] * step[:, None, None] + slot[None, None, :]  # [B, F, W]
    k0 = torch.floor(u)
    alpha = (u - k0).to(features.dtype)
    k0 = k0.long()
    k1 = k0 + 1
    length = lengths.to(device=device, dtype=torch.long)[:, None, None]
    in0 = (k0 >= 0) & (k0 < length)
    in1 = (k1 >= 0) & (k1 < length)
    valid = (u >= 0) & (u <= (length - 1).to(torch.float64))

    flat = features.reshape(bsz, max_len, n_layers * dim)

    def gather(idx: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        safe = idx.clamp(0, max_len - 1).reshape(bsz, -1, 1).expand(-1, -1, flat.shape[-1])
        rows = torch.gather(flat, 1, safe).reshape(bsz, num_frames, window, -1)
        return rows * inside[..., None].to(rows.dtype)

    f0 = gather(k0, in0)
    f1 = gather(k1, in1)
    out = (1 - alpha)[..., None] * f0 + alpha[..., None] * f1
    out = out * valid[..., None].to(out.dtype)
    return out.reshape(bsz, num_frames, window, n_layers, dim), valid
