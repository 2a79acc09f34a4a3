"""Which clip's speech drives a clip in novel-audio modes (eval.run, validation, the lip-sync benchmark)."""

from types import SimpleNamespace

from eval.pairing import novel_audio_partners


def clips(*spans: tuple[str, int]):
    return [SimpleNamespace(key=f"{v}_{s}", record={"source": f"/data/{v}.mp4", "span": [s, s + 25]}) for v, s in spans]


def test_another_persons_speech_from_another_point_of_an_utterance_first():
    got = novel_audio_partners(clips(("a", 0), ("a", 25), ("b", 0), ("b", 25)))
    # a_0 -> b_25 (another video, another start); b_0 -> a_25; never the clip's own video while another exists.
    assert got == [3, 2, 1, 0]


def test_another_video_at_the_same_start_beats_the_same_video():
    assert novel_audio_partners(clips(("a", 0), ("b", 0))) == [1, 0]


def test_one_video_falls_back_to_another_utterance_then_the_next_clip():
    assert novel_audio_partners(clips(("a", 0), ("a", 25), ("a", 50))) == [1, 2, 0]
    assert novel_audio_partners(clips(("a", 0), ("a", 0))) == [1, 0]
    assert novel_audio_partners(clips(("a", 0))) == [0]
