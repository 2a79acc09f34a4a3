"""Which clip's speech drives a clip when it is dubbed with novel audio: one rule for every such use.

``eval.run``'s and the validation callback's ``v2v_novel`` mode, and the lip-sync benchmark's dubs
(:mod:`eval.lipsync`), all pair clips with :func:`novel_audio_partners`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for annotations: pairing needs the records, not the decoding stack
    from trainer.data.decode import ClipSample

__all__ = ["novel_audio_partners"]


def _source(clip: ClipSample) -> str:
    return Path(str(clip.record.get("source", clip.key))).stem


def _start(clip: ClipSample) -> int | None:
    span = clip.record.get("span")
    return int(span[0]) if span else None


def novel_audio_partners(clips: Sequence[ClipSample]) -> list[int]:
    """For each clip, the index of the clip whose speech drives it.

    The partner is, in this order of preference: a clip of another source video starting at another point of
    its video (another person's speech; clips starting at the same point share the silence before the first
    word, which would make any two mouths agree); a clip of another source video; a clip of the same video
    starting elsewhere (another utterance of the same person); the next clip. Candidates are searched from
    half-way round the list, so that the clip's neighbours, usually cut from the same video, come last.

    Args:
        clips: The clips, with their records (``source``, ``span``) as data_prep writes them.

    Returns:
        ``[N]`` partner indices (a single clip is its own partner).
    """
    n = len(clips)
    sources = [_source(c) for c in clips]
    starts = [_start(c) for c in clips]
    partners = []
    for i in range(n):
        order = [(i + n // 2 + k) % n for k in range(n) if (i + n // 2 + k) % n != i]
        other_video = [j for j in order if sources[j] != sources[i]]
        other_start = [j for j in order if starts[j] != starts[i] or starts[i] is None]
        preferred = [j for j in other_video if j in other_start] or other_video or other_start
        partners.append(preferred[0] if preferred else (i + 1) % n)
    return partners
