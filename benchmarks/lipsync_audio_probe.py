"""Is the mouth opening in the audio features? A linear probe from the shards' Whisper features to the truth.

    python benchmarks/lipsync_audio_probe.py [--out demo_out] [--clips 400]

When the lip-sync benchmark (``benchmarks/lipsync_learning.py``) shows no sync, this separates the audio side
from the video side: on the demo's training corpus (clips cut at their source's own 25 fps, so each frame has
the generator's true mouth opening) it fits a ridge regression from the Whisper rows around each frame
(±2 rows at 50 Hz, every stored layer) to the mouth opening, and reports the correlation of its predictions on
the held-out people's clips, next to the correlation of the audio's RMS energy with the opening. A high probe
correlation means the features a model is trained on carry the sync; the loss is elsewhere (VAE, DiT,
adapter). It also reports ``feature_content_share``: the share of the features' variance that differs between
clips at the same row of the encoder window (what the audio says) rather than following the row (the encoder's
positional embeddings). A probe standardises every feature and finds a signal of any size; an adapter trained
for a few hundred steps does not, so a share near 0 means the features are practically audio-free. Prints one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from data_prep.synthetic.corpus import load_manifest  # noqa: E402
from eval.clips import read_clips  # noqa: E402
from eval.lipsync.cases import clip_plan  # noqa: E402
from launch.demo_config import HELDOUT_SEED  # noqa: E402
from trainer.config.compose import load_train_config  # noqa: E402

WHISPER_HZ = 50  # Whisper encoder rows per second
CONTEXT = 2  # rows on each side of a frame's own row


def content_share(clip_rows: list[np.ndarray]) -> float | None:
    """Share of the features' variance that is not explained by the row position in the clip.

    Args:
        clip_rows: Per clip, its Whisper rows ``[L_i, D]`` (every stored layer flattened), each clip's rows
            starting at the clip's first frame.

    Returns:
        ``Σ_d Var(x − mean over clips at the same row) / Σ_d Var(x)`` over the first ``min L_i`` rows, or ``None``
        with fewer than two clips.
    """
    if len(clip_rows) < 2:
        return None
    rows = min(r.shape[0] for r in clip_rows)
    x = np.stack([r[:rows] for r in clip_rows]).astype(np.float64)  # [K, L, D]
    total = x.reshape(-1, x.shape[-1]).var(axis=0).sum()
    within = (x - x.mean(axis=0, keepdims=True)).reshape(-1, x.shape[-1]).var(axis=0).sum()
    return float(within / total) if total > 0 else None


def frame_table(corpus: Path, limit: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float | None]:
    """Per frame of a corpus's clips: Whisper rows ``[N, (2·CONTEXT+1)·L·D]``, true opening ``[N]``, RMS ``[N]``.

    The fourth value is the corpus's :func:`content_share` (over every clip read, not only the 25 fps ones).
    """
    # Only the feature layout of the demo's clips is read from the config; any existing folder stands in for the base.
    cfg = load_train_config(["experiment=demo", "data.shards=unused", f"model.transformer.path={corpus}"])
    entries = {e.video_id: e for e in load_manifest(corpus / "corpus")}
    feats, opening, energy, clip_rows = [], [], [], []
    for clip, audio, rate in read_clips(str(corpus / "prep" / "shards" / "*.tar"), cfg, limit):
        clip_rows.append(clip.whisper.reshape(clip.whisper.shape[0], -1))
        try:
            plan = clip_plan(clip, entries)
        except ValueError:  # a 30 fps source resampled to 25 fps: no frame-exact truth
            continue
        rows = clip.whisper.reshape(clip.whisper.shape[0], -1)
        for f in range(clip.frames.shape[0]):
            t = f / clip.fps
            i = int(round(t * WHISPER_HZ))
            idx = np.clip(np.arange(i - CONTEXT, i + CONTEXT + 1), 0, rows.shape[0] - 1)
            feats.append(rows[idx].reshape(-1))
            opening.append(plan.mouth_open[f])
            s = int(t * rate)
            segment = audio[max(s - rate // 50, 0) : s + rate // 50]
            energy.append(float(np.sqrt(np.mean(segment**2))) if segment.size else 0.0)
    table = np.asarray(feats, np.float64), np.asarray(opening, np.float64), np.asarray(energy, np.float64)
    return (*table, content_share(clip_rows))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "demo_out", help="the demo's out_dir")
    parser.add_argument("--clips", type=int, default=400, help="clips read from each corpus")
    args = parser.parse_args()
    start = time.perf_counter()
    corpora = args.out / "data" / "corpora"
    # The newest corpora: an older demo's (other settings, another audio encoder) may sit next to them.
    train = sorted((p for p in corpora.glob("*_seed0") if p.is_dir()), key=lambda p: p.stat().st_mtime)
    held = sorted((p for p in corpora.glob(f"*_seed{HELDOUT_SEED}") if p.is_dir()), key=lambda p: p.stat().st_mtime)
    if not train or not held:
        print(f"error: no demo corpora in {corpora}: run `make demo` first (or pass --out)", file=sys.stderr)
        return 2
    xt, yt, et, share = frame_table(train[-1], args.clips)
    xh, yh, eh, _ = frame_table(held[-1], args.clips)
    if len(yt) < 10 or len(yh) < 10:
        print(
            f"error: too few 25 fps frames with a true opening ({len(yt)} train, {len(yh)} held out)", file=sys.stderr
        )
        return 2
    mu, sd = xt.mean(0), xt.std(0) + 1e-6
    a, b = (xt - mu) / sd, (xh - mu) / sd
    probe = {}
    for lam in (1.0, 10.0, 100.0, 1000.0):
        w = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ (yt - yt.mean()))
        probe[f"{lam:g}"] = float(np.corrcoef(b @ w, yh)[0, 1])
    out = {
        "train_corpus": str(train[-1]),
        "heldout_corpus": str(held[-1]),
        "frames": {"train": int(len(yt)), "heldout": int(len(yh))},
        "energy_corr": {"train": float(np.corrcoef(et, yt)[0, 1]), "heldout": float(np.corrcoef(eh, yh)[0, 1])},
        "ridge_heldout_corr_by_lambda": probe,
        "ridge_heldout_corr_best": max(probe.values()),
        "feature_content_share": share,
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
