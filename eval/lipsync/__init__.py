"""The lip-sync benchmark: dub held-out synthetic people with other speech and compare with the ground truth.

Held-out people (a corpus seed never trained on, 25 fps so that clip frames are source frames) go through
data_prep like the training corpus. Each held-out clip is dubbed in V2V lip mode with the speech (Whisper
features from its shard) of a clip of another person, and compared with the exact video a perfect dub would
be: the same person, pose, blinks and light rendered with the mouth of the driving utterance
(:func:`data_prep.synthetic.clips.generate_dub_ground_truth`), over the clip's own span of its source video.

Four videos are scored against that ground truth inside the region a mouth can reach (the lower-face box of
the fully opened mouth, per frame): the trained model's dub, the base model's (no adapter: it cannot hear),
the undubbed source copied through, and the VAE reconstruction of the ground truth itself (the best any
model on this VAE can do). Mouth opening is measured as the difference from the same person rendered with
a closed mouth (:mod:`eval.metrics.dub`).

Modules: :mod:`eval.lipsync.cases` (held-out clips paired with other speech, and their ground truths),
:mod:`eval.lipsync.dubs` (every arm's video of a case), :mod:`eval.lipsync.scores` (the arms against the
ground truth, and the summary JSON) and :mod:`eval.lipsync.audio_gain` (the held-out loss with each clip's
own speech against another's).
"""
