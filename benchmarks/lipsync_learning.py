"""Does talkdit learn lip sync? Dub held-out synthetic people with other speech and compare with ground truth.

    python benchmarks/lipsync_learning.py [--checkpoint CKPT] [--clips N] [--steps S] [--ablation shuffled_audio]

``CKPT`` is a stage-1 or stage-2 checkpoint trained on the tiny base (default: the newest
``demo_out/runs/*/stage2/checkpoints/last.ckpt`` that ``make demo`` wrote). The held-out people (a corpus
seed the demo never trains on, 25 fps) are generated and prepared by data_prep under ``--out``
(reused). Each held-out clip is dubbed in V2V lip mode with another person's speech and compared with
the exact video a perfect dub would be (:mod:`eval.lipsync`). Prints one JSON object:

- ``mouth_mse_trained`` / ``_base`` / ``_source`` / ``_vae_ceiling``: pixel MSE inside the region a mouth can
  reach, against the ground-truth dub, for the trained model, the base model without adapter, the undubbed
  source and the VAE reconstruction of the ground truth;
- ``gap_closed``: ``(source − trained) / (source − vae_ceiling)``;
- ``openness_corr_trained`` / ``_base``: correlation over frames of the measured mouth opening with the driving
  speech's, and ``openness_measure_check``: the same on the VAE reconstruction of the ground truth;
- ``silence_closed_trained``: share of frames in silent spans of the driving audio with a closed mouth
  (``silence_closed_vae_ceiling``: the same on the VAE reconstruction of the ground-truth dub);
- ``audio_loss_gain``: the held-out masked flow-matching loss with each clip's own speech against another
  clip's (:func:`eval.lipsync.audio_gain.audio_loss_gain`): ``gain > 0`` means the model uses what the audio
  says, measured in latent space, where the VAE does not hide it.

``--ablation shuffled_audio`` drives each dub with its Whisper features shuffled over time (the same
frames in random order): a model that uses the audio loses its lip sync; ``--ablation no_adapter`` scores
the trained checkpoint with its adapter's output gated off (the LoRA of stage 2 stays).

``--paste mouth`` keeps, of each dub's generated tokens, only the pixels this person's mouth can change (where
the clip rendered with the mouth fully open differs from it closed, grown 2 px and feathered); the rest of
the lower-face box stays the source's, and the VAE ceiling is pasted through the same mask. With the default
``--paste tokens`` every generated pixel counts, so the MSE keys also measure how well the model redraws the
static skin around the mouth; the two together say how much of a dub's error is the mouth itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from eval.clips import read_clips  # noqa: E402
from eval.lipsync.audio_gain import audio_loss_gain  # noqa: E402
from eval.lipsync.cases import dub_cases  # noqa: E402
from eval.lipsync.dubs import PASTE_REGIONS, base_model_of, run_cases  # noqa: E402
from eval.lipsync.scores import summarize  # noqa: E402
from eval.sampler.config import GuidanceConfig, SamplerConfig  # noqa: E402
from launch.corpus import CorpusSpec, prepare_corpus  # noqa: E402
from launch.demo_config import HELDOUT_SEED, DemoConfig  # noqa: E402
from trainer.stage_model import load_trained_model  # noqa: E402


def heldout_spec(
    num_videos: int, audio: str, num_refs: int, clip_frames: int, size: int, zoom: float, duration_s: float
) -> CorpusSpec:
    """The held-out people: the demo's held-out corpus seed (its training corpus never uses it), 25 fps only.

    Framing (``zoom``) and length must match the corpus the model was trained on.
    """
    return CorpusSpec(
        num_videos=num_videos,
        seed=HELDOUT_SEED,
        fps=[25.0],
        size=size,
        zoom=zoom,
        duration_s=duration_s,
        clip_frames=clip_frames,
        audio=audio,
        num_reference_frames=num_refs,
    )


def newest_demo_checkpoint(out_dir: Path) -> Path | None:
    """The newest stage-2 ``last.ckpt`` of the demo runs under ``out_dir``."""
    found = sorted((out_dir / "runs").glob("*/stage2/checkpoints/last.ckpt"))
    return found[-1] if found else None


def shuffled(clip, seed: int):
    """The clip with its Whisper feature rows in random order (same values, no timing)."""
    rng = np.random.default_rng(seed)
    return dataclasses.replace(clip, whisper=clip.whisper[rng.permutation(clip.whisper.shape[0])])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=REPO / "demo_out")
    parser.add_argument("--clips", type=int, default=8, help="held-out clips to dub")
    parser.add_argument("--videos", type=int, default=6, help="held-out people (videos) to generate")
    parser.add_argument("--steps", type=int, default=16, help="Euler steps per sample")
    parser.add_argument("--audio-guidance", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--zoom", type=float, default=DemoConfig.zoom, help="framing of the training corpus")
    parser.add_argument("--duration", type=float, default=DemoConfig.duration_s, help="seconds per video")
    parser.add_argument("--ablation", choices=("none", "shuffled_audio", "no_adapter"), default="none")
    parser.add_argument(
        "--invert-edit", action="store_true", help="dub by inversion editing (RASA) instead of from noise"
    )
    parser.add_argument(
        "--paste",
        choices=PASTE_REGIONS,
        default="tokens",
        help="what of the generated pixels a dub keeps: the generated tokens, or the mouth's reach within them",
    )
    args = parser.parse_args()
    torch.set_num_threads(2)

    checkpoint = args.checkpoint or newest_demo_checkpoint(args.out)
    if checkpoint is None or not Path(checkpoint).exists():
        print(
            f"error: no checkpoint: pass --checkpoint or run `make demo` first (looked in {args.out})", file=sys.stderr
        )
        return 2
    start = time.perf_counter()
    model, cfg = load_trained_model(checkpoint)
    size = int(np.sqrt(cfg.data.max_megapixels * 1e6) + 0.5)
    spec = heldout_spec(
        args.videos,
        cfg.audio.name,
        cfg.objective.num_reference_frames,
        cfg.data.max_frames,
        size,
        args.zoom,
        args.duration,
    )
    held = prepare_corpus(spec, args.out / "data" / "heldout")
    clips = read_clips(held.shards, cfg, args.clips)
    cases = dub_cases(clips, held.corpus)
    if not cases:
        print(f"error: the first {len(clips)} held-out clips show one person: raise --clips", file=sys.stderr)
        return 2
    if args.ablation == "shuffled_audio":
        cases = [dataclasses.replace(c, driving=shuffled(c.driving, args.seed + i)) for i, c in enumerate(cases)]
    if args.ablation == "no_adapter":
        for block in model.dit.transformer.transformer_blocks:
            block.audio_attn.to_out.weight.data.zero_()
            block.audio_attn.to_out.bias.data.zero_()
    sampler = SamplerConfig(
        num_steps=args.steps, seed=args.seed, guidance=GuidanceConfig(audio=args.audio_guidance, text=1.0)
    )
    results = run_cases(
        model, base_model_of(cfg, model.device), cfg, sampler, cases, args.seed, args.invert_edit, args.paste
    )
    summary = summarize([scores for _, scores in results])
    if model.adapter_config is not None:
        summary["audio_loss_gain"] = audio_loss_gain(model, cfg, held.shards, seed=args.seed)
    summary.update(
        {
            "checkpoint": str(checkpoint),
            "stage": cfg.stage.name,
            "ablation": args.ablation,
            "heldout_shards": held.shards,
            "euler_steps": args.steps,
            "audio_guidance": args.audio_guidance,
            "sampling": "invert_edit" if args.invert_edit else "noise",
            "paste": args.paste,
            "seconds": round(time.perf_counter() - start, 1),
        }
    )
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
