"""TAPSF block scheduling, block-wise velocity averaging and progressive prefix conditioning."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from eval.sampler.prefix_conditioning import align_to_anchor, channel_stats, prefix_windows, progressive_prefix_denoise
from eval.sampler.tapsf import (
    TAPSFConfig,
    TAPSFSchedule,
    block_plan,
    block_video_coords,
    blockwise_velocity,
    frame_coverage,
    partition_offsets,
    shifting_steps,
    slice_block,
    take_frames,
)
from trainer.model.sequence import patchify, video_coords

REPO = Path(__file__).resolve().parents[2]

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "tapsf_memory.py"


# --- schedule -------------------------------------------------------------------------------------


@pytest.mark.parametrize("wrap", [False, True])
@pytest.mark.parametrize("num_frames", [1, 5, 16, 17, 18, 33, 34, 35, 51, 60, 100])
def test_every_step_covers_every_frame_with_full_blocks(num_frames, wrap):
    cfg = TAPSFConfig(wrap=wrap)
    schedule = TAPSFSchedule(num_frames, 40, cfg)
    for step in range(40):
        blocks = schedule.blocks(step)
        assert bool((frame_coverage(blocks, num_frames) >= 1).all()), (step, blocks)
        for idx in blocks:
            # Bounded memory: a block is never longer than the block size (nor the video).
            assert idx.numel() == min(cfg.block_size, num_frames)
            assert int(idx.min()) >= 0 and int(idx.max()) < num_frames
            assert len(set(idx.tolist())) == idx.numel()
            if not wrap:
                assert torch.equal(idx, torch.arange(int(idx[0]), int(idx[0]) + idx.numel()))


def test_overlap_only_where_a_boundary_remainder_is_widened():
    # 51 = 3 x 17 frames and no offset: a plain partition, each frame evaluated once.
    assert frame_coverage(block_plan(51, 17, 0), 51).tolist() == [1] * 51
    # Offset 5: [0, 12) is a remainder, widened to [0, 17) overlapping [12, 29) on 12..16; the tail
    # [46, 51) is widened to [34, 51) overlapping [29, 46) on 34..45.
    blocks = block_plan(51, 17, 5)
    assert [(int(b[0]), int(b[-1]) + 1) for b in blocks] == [(0, 17), (12, 29), (29, 46), (34, 51)]
    cover = frame_coverage(blocks, 51)
    assert cover[12:17].tolist() == [2] * 5 and cover[34:46].tolist() == [2] * 12
    assert int(cover.sum()) == 4 * 17


def test_shift_schedule_early_and_late_steps_shift_middle_75_percent_do_not():
    steps = 40
    flags = shifting_steps(steps)
    assert flags == [True] * 5 + [False] * 30 + [True] * 5
    offsets = partition_offsets(steps, TAPSFConfig())
    assert offsets[0] == 0
    for i in range(1, steps):
        expected = 5 if flags[i] else 0
        assert (offsets[i] - offsets[i - 1]) % 17 == expected, i
    # The shift accumulates: offset = 5 x (shifting steps so far, not counting step 0) mod 17.
    assert offsets[:5] == [0, 5, 10, 15, 3]
    assert set(offsets[5:35]) == {3}
    assert offsets[35:] == [8, 13, 1, 6, 11]


@pytest.mark.parametrize("steps", [1, 2, 7, 8, 10, 25, 30, 50])
def test_unshifted_fraction_is_the_middle_of_the_schedule(steps):
    for fraction in (0.0, 0.5, 0.75, 1.0):
        flags = shifting_steps(steps, fraction)
        unshifted = [i for i, f in enumerate(flags) if not f]
        assert len(unshifted) == int(fraction * steps + 0.5)
        if unshifted:  # one contiguous run in the middle, the odd edge step going first
            assert unshifted == list(range(unshifted[0], unshifted[-1] + 1))
            early, late = unshifted[0], steps - 1 - unshifted[-1]
            assert early - late in (0, 1)


def test_partition_moves_by_the_offset():
    schedule = TAPSFSchedule(100, 40, TAPSFConfig(block_size=17, shift=5))
    for step in range(40):
        off = schedule.offsets[step]
        starts = [int(b[0]) for b in schedule.blocks(step)]
        # Interior blocks sit on the shifted grid k*17 - offset.
        interior = [s for s in starts if s > 0 and s + 17 < 100]
        assert interior and all((s + off) % 17 == 0 for s in interior)
    # A middle step reuses the previous partition (cache-friendly); a late step does not.
    assert [b.tolist() for b in schedule.blocks(20)] == [b.tolist() for b in schedule.blocks(19)]
    assert [b.tolist() for b in schedule.blocks(36)] != [b.tolist() for b in schedule.blocks(35)]


def test_wrap_blocks_are_sonics_circular_blocks():
    blocks = block_plan(40, 17, 5, wrap=True)
    assert blocks[0].tolist() == [35, 36, 37, 38, 39] + list(range(12))
    assert blocks[1].tolist() == list(range(12, 29))
    assert blocks[2].tolist() == list(range(29, 40)) + list(range(6))


# --- block-wise velocity ------------------------------------------------------------------------


def test_overlap_averaging_is_exact_hand_computed():
    latents = torch.zeros(2, 3, 40, 2, 2)
    blocks = block_plan(40, 17, 5)
    assert [(int(b[0]), int(b[-1]) + 1) for b in blocks] == [(0, 17), (12, 29), (23, 40)]
    values = [1.0, 10.0, 100.0]
    calls = []

    def fn(x, idx):
        calls.append(idx.clone())
        return torch.full_like(x, values[len(calls) - 1])

    v = blockwise_velocity(latents, blocks, fn)
    expected = torch.tensor([1.0] * 12 + [5.5] * 5 + [10.0] * 6 + [55.0] * 6 + [100.0] * 11)
    assert torch.equal(v[0, 0, :, 0, 0], expected)
    assert torch.equal(v, expected.view(1, 1, -1, 1, 1).expand_as(v))
    assert [c.tolist() for c in calls] == [b.tolist() for b in blocks]


def test_overlap_averaging_with_triple_coverage_and_wrap():
    # Blocks of 4 over 6 frames with offset 1: [0,4) [3,7)->[2,6); wrap: [5,0,1,2] [3,4,5,0].
    latents = torch.zeros(1, 1, 6, 1, 1)
    for wrap, expect in (
        (False, [1, 1, (1 + 2) / 2, (1 + 2) / 2, 2, 2]),
        (True, [(1 + 2) / 2, 1, 1, 2, 2, (1 + 2) / 2]),
    ):
        blocks = block_plan(6, 4, 1, wrap=wrap)
        it = iter([1.0, 2.0])
        v = blockwise_velocity(latents, blocks, lambda x, idx, it=it: torch.full_like(x, next(it)))
        assert v.flatten().tolist() == expect
    # Arbitrary hand-made blocks: frame 2 seen three times.
    blocks = [torch.tensor([0, 1, 2]), torch.tensor([2, 3]), torch.tensor([1, 2, 4, 5])]
    it = iter([3.0, 6.0, 12.0])
    v = blockwise_velocity(latents, blocks, lambda x, idx: torch.full_like(x, next(it)))
    assert v.flatten().tolist() == [3.0, 7.5, 7.0, 6.0, 12.0, 12.0]


def test_frame_local_fn_gives_the_full_sequence_result():
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, 45, 3, 2, generator=g)

    def fn(x, idx):  # depends on each frame and its global index only
        return 2.0 * x - idx.to(x).view(1, 1, -1, 1, 1)

    full = fn(latents, torch.arange(45))
    for step, cfg in enumerate((TAPSFConfig(), TAPSFConfig(wrap=True))):
        blocks = TAPSFSchedule(45, 10, cfg).blocks(step + 1)
        torch.testing.assert_close(blockwise_velocity(latents, blocks, fn), full, rtol=0, atol=1e-6)


def test_missing_frames_and_wrong_shapes_are_errors():
    latents = torch.zeros(1, 2, 10, 1, 1)
    with pytest.raises(ValueError, match=r"in no block"):
        blockwise_velocity(latents, [torch.arange(0, 5)], lambda x, idx: x)
    with pytest.raises(ValueError, match=r"expected \(1, 2, 10, 1, 1\)"):
        blockwise_velocity(latents, [torch.arange(10)], lambda x, idx: x[:, :, :5])


def test_slicing_per_token_tensors_and_global_rope_coordinates():
    bsz, ch, frames, h, w = 2, 3, 30, 2, 3
    latents = torch.randn(bsz, ch, frames, h, w)
    tokens = patchify(latents)  # [B, T*H*W, C]
    timesteps = torch.rand(bsz, frames * h * w)
    per_frame = torch.rand(bsz, frames, 5)
    fps = torch.tensor([25.0, 30.0])
    full_coords = video_coords(bsz, frames, h, w, fps, torch.device("cpu"))  # [B, 3, N]
    for idx in block_plan(frames, 17, 5) + block_plan(frames, 17, 5, wrap=True):
        block = take_frames(latents, idx)
        assert torch.equal(slice_block(tokens, idx, frames), patchify(block))
        assert torch.equal(slice_block(timesteps[..., None], idx, frames)[..., 0], slice_block(timesteps, idx, frames))
        assert slice_block(timesteps, idx, frames).shape == (bsz, idx.numel() * h * w)
        assert torch.equal(slice_block(per_frame, idx, frames), per_frame[:, idx])
        coords = block_video_coords(idx, bsz, h, w, fps)
        # RoPE of a block = the full video's coordinates of the same tokens (global frame space).
        assert torch.equal(coords, slice_block(full_coords.movedim(1, 2), idx, frames).movedim(2, 1))
    with pytest.raises(ValueError, match=r"not 30 frames"):
        slice_block(torch.zeros(1, 31), torch.arange(3), frames)


# Each side is measured in a fresh interpreter: inside the long test process, pages that earlier tests freed
# can absorb the allocation and leave the peak RSS where it was (a CI run measured 0 for both).
_PEAK_SCRIPT = """
import json, re, sys
import torch
from eval.sampler.tapsf import block_plan, blockwise_velocity
from trainer.model.sequence import patchify

def rss(key):
    with open("/proc/self/status") as f:
        return int(re.search(key + r":\\s+(\\d+) kB", f.read()).group(1)) * 1024

torch.manual_seed(0)
latents = torch.randn(1, 16, 68, 8, 8)
largest = []

def attention(x, idx):
    tokens = patchify(x)[0]  # [N, C]
    scores = tokens @ tokens.T / 4.0  # [N, N]: memory quadratic in the frames of the call
    largest.append(scores.numel() * scores.element_size())
    out = torch.softmax(scores, dim=-1) @ tokens
    return out.T.reshape_as(x[0])[None]

attention(latents[:, :, :2], torch.arange(2))  # warm-up: first-call allocations are not the score matrix
largest.clear()
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    print(json.dumps({"skip": "cannot reset the peak RSS (/proc/self/clear_refs not writable)"}))
    sys.exit(0)
before = rss("VmRSS")
if sys.argv[1] == "full":
    attention(latents, torch.arange(68))
else:
    blocks = block_plan(68, 17, 5)  # a shifted partition: 5 blocks, two of them overlapping
    assert len(blocks) == 5
    blockwise_velocity(latents, blocks, attention)
print(json.dumps({"peak": rss("VmHWM") - before, "largest": largest}))
"""


def _peak_rss_delta(mode: str) -> dict:
    """Peak RSS growth (bytes) and score-matrix sizes of one side, run in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, mode],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if "skip" in result:
        pytest.skip(result["skip"])
    return result


def test_peak_memory_of_blocks_vs_full_sequence():
    """Full attention over 68 frames x 64 tokens (a 75 MB score matrix) vs 17-frame blocks."""
    full, block = _peak_rss_delta("full"), _peak_rss_delta("blocks")
    assert full["largest"] == [(68 * 64) ** 2 * 4] and max(block["largest"]) == (17 * 64) ** 2 * 4
    # Measured: the score matrices dominate, (17/68)^2 = 1/16 of the full one plus the
    # full-size velocity accumulator; allow generous slack for allocator behaviour.
    assert full["peak"] >= (68 * 64) ** 2 * 4  # the full score matrix was resident
    assert block["peak"] < 0.25 * full["peak"], (block["peak"], full["peak"])


# --- progressive prefix conditioning ------------------------------------------------------------


@pytest.mark.parametrize("num_frames", [1, 10, 17, 18, 30, 31, 44, 100])
def test_prefix_windows_merge_to_every_frame_once(num_frames):
    windows = prefix_windows(num_frames, 17, 4)
    merged = list(windows[0]) + [f for w in windows[1:] for f in list(w)[4:]]
    assert merged == list(range(num_frames))
    assert all(len(w) <= 17 for w in windows)
    for a, b in zip(windows, windows[1:]):
        assert b.start == a.stop - 4 and len(b) > 4


def test_prefix_is_clean_previous_window_output_with_global_indices():
    g = torch.Generator().manual_seed(2)
    latents = torch.randn(1, 3, 30, 2, 2, generator=g)
    sigmas = torch.linspace(1.0, 0.0, 5)
    calls = []

    def fn(x, idx, frame_sigma):
        calls.append((x.clone(), idx.clone(), frame_sigma.clone()))
        return x * 0.5 + idx.to(x).view(1, 1, -1, 1, 1) * 0.01

    out = progressive_prefix_denoise(latents, sigmas, fn, window=17, prefix_frames=4, anchor_alignment=False)
    assert len(calls) == 2 * 4  # windows [0, 17) and [13, 30), 4 steps each
    for step, (x, idx, frame_sigma) in enumerate(calls[4:]):
        assert idx.tolist() == list(range(13, 30))
        assert frame_sigma[:, :4].eq(0).all() and frame_sigma[:, 4:].eq(float(sigmas[step])).all()
        # The prefix is the first window's final (clean) latents, unchanged through the steps.
        assert torch.equal(x[:, :, :4], out[:, :, 13:17])
    # The second window starts from the given initial latents for its own frames.
    assert torch.equal(calls[4][0][:, :, 4:], latents[:, :, 17:30])
    # A window covering the whole video is plain Euler denoising.
    whole = progressive_prefix_denoise(latents, sigmas, fn, window=64)
    x = latents.clone()
    for i in range(4):
        x = x + float(sigmas[i + 1] - sigmas[i]) * fn(x, torch.arange(30), torch.full((1, 30), float(sigmas[i])))
    torch.testing.assert_close(whole, x, rtol=0, atol=1e-6)


def test_anchor_alignment_matches_first_window_statistics_every_step():
    g = torch.Generator().manual_seed(3)
    latents = torch.randn(2, 4, 45, 3, 3, generator=g)
    sigmas = torch.linspace(1.0, 0.0, 6)
    anchor_stats, later_stats = {}, {}

    def drifting(x, idx, frame_sigma):
        # Later windows drift: a velocity that grows with the global frame index.
        return -0.3 * x - 0.05 * idx.to(x).view(1, 1, -1, 1, 1)

    def recording(x, idx, frame_sigma):
        n_prefix = int((frame_sigma[0] == 0).sum())
        store = anchor_stats if int(idx[0]) == 0 else later_stats.setdefault(int(idx[0]), {})
        step = len(store)
        store[step] = channel_stats(x[:, :, n_prefix:])
        return drifting(x, idx, frame_sigma)

    out = progressive_prefix_denoise(latents, sigmas, recording, window=17, prefix_frames=4)
    final_anchor = channel_stats(out[:, :, :17])
    # Each later window's input at step i+1 carries the anchor-aligned latents of step i.
    for stats in later_stats.values():
        for step in range(1, 5):
            torch.testing.assert_close(stats[step][0], anchor_stats[step][0], rtol=0, atol=1e-5)
            torch.testing.assert_close(stats[step][1], anchor_stats[step][1], rtol=1e-4, atol=1e-5)
    for lo, hi in ((17, 30), (30, 43), (43, 45)):  # the new frames of windows 2..4
        mean, std = channel_stats(out[:, :, lo:hi])
        torch.testing.assert_close(mean, final_anchor[0], rtol=0, atol=1e-5)
        torch.testing.assert_close(std, final_anchor[1], rtol=1e-4, atol=1e-5)
    # Without alignment the drift shows in the statistics.
    raw = progressive_prefix_denoise(latents, sigmas, drifting, window=17, prefix_frames=4, anchor_alignment=False)
    assert (channel_stats(raw[:, :, 30:43])[0] - final_anchor[0]).abs().max() > 0.1


def test_align_to_anchor_is_an_affine_renormalisation():
    x = torch.randn(1, 2, 5, 4, 4) * 3 + 1
    mean, std = torch.tensor([0.5, -1.0]).view(1, 2, 1, 1, 1), torch.tensor([2.0, 0.1]).view(1, 2, 1, 1, 1)
    y = align_to_anchor(x, mean, std)
    m, s = channel_stats(y)
    torch.testing.assert_close(m, mean, rtol=0, atol=1e-5)
    torch.testing.assert_close(s, std, rtol=1e-4, atol=1e-6)
    # Per channel the map is increasing affine: the ordering of values is kept.
    assert torch.equal(torch.argsort(y[0, 0].flatten()), torch.argsort(x[0, 0].flatten()))


# --- benchmark script ---------------------------------------------------------------------------


@pytest.mark.slow
def test_tapsf_memory_benchmark_runs(capsys):
    spec = importlib.util.spec_from_file_location("tapsf_memory", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = module.main(["--latent-frames", "40", "--height", "2", "--width", "2", "--repeats", "1"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["benchmark"] == "tapsf_memory" and printed == report
    assert report["tapsf_shifted"]["blocks"] == 3 and report["full"]["tokens"] == 160
    assert report["max_abs_diff_framewise_check"] < 1e-5
