"""Embedded synthetic talking-head corpus: speech audio, rendered faces, clips and corpora from a seed.

Nothing is downloaded and no media is shipped: every clip is computed from its seed.

- ``speech.synthesize_speech``: speech-like audio and the mouth opening that goes with it (its utterance
  plan: ``speech_plan``).
- ``face.FaceRenderer``: a photographic-looking, posable head that face detectors find, with face and
  lower-face boxes (parts: ``identity``, ``face_relief``, ``skin``, ``brows``, ``hair``, ``eyes``, ``mouth``,
  ``head_model``, ``backdrop``, ``lighting``, ``camera``).
- ``clips.generate_clip`` / ``clips.write_clip``: a talking-head clip in memory, and its mp4 + wav.
- ``corpus.generate_corpus``: a resumable folder of clips with a manifest (CLI: ``data_prep.synthetic.cli``).
"""

from data_prep.synthetic.clips import SyntheticClip, generate_clip, write_clip
from data_prep.synthetic.corpus import CorpusEntry, generate_corpus, load_manifest
from data_prep.synthetic.face import FaceRenderer, RenderedFrame
from data_prep.synthetic.speech import SpeechTrack, synthesize_speech

__all__ = [
    "CorpusEntry",
    "FaceRenderer",
    "RenderedFrame",
    "SpeechTrack",
    "SyntheticClip",
    "generate_clip",
    "generate_corpus",
    "load_manifest",
    "synthesize_speech",
    "write_clip",
]
