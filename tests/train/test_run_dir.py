"""``resume=auto`` finds the run directory's last checkpoint: a Lightning file or a DeepSpeed folder."""

from types import SimpleNamespace

import torch

from trainer.run_dir import auto_resume_checkpoint


def cfg(run_dir):
    return SimpleNamespace(run_dir=str(run_dir), experiment_name="x", run_root="unused")


def test_no_checkpoint_means_a_fresh_start(tmp_path):
    assert auto_resume_checkpoint(cfg(tmp_path)) is None
    (tmp_path / "checkpoints").mkdir()
    assert auto_resume_checkpoint(cfg(tmp_path)) is None


def test_last_checkpoint_file(tmp_path):
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    torch.save({"global_step": 3, "state_dict": {}}, last)
    assert auto_resume_checkpoint(cfg(tmp_path)) == last


def test_deepspeed_folder_counts_once_its_tag_file_exists(tmp_path):
    last = tmp_path / "checkpoints" / "last.ckpt"
    (last / "global_step3").mkdir(parents=True)
    assert auto_resume_checkpoint(cfg(tmp_path)) is None  # no 'latest': not a complete DeepSpeed checkpoint
    (last / "latest").write_text("global_step3")
    assert auto_resume_checkpoint(cfg(tmp_path)) is None  # the tag has no client state: skipped
    torch.save({"global_step": 3, "module": None}, last / "global_step3" / "mp_rank_00_model_states.pt")
    assert auto_resume_checkpoint(cfg(tmp_path)) == last


def test_a_periodic_checkpoint_newer_than_last_wins(tmp_path):
    # A kill between the periodic save and its copy to last.ckpt leaves last.ckpt one period behind.
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    torch.save({"global_step": 5}, folder / "last.ckpt")
    torch.save({"global_step": 5}, folder / "step0000005.ckpt")
    assert auto_resume_checkpoint(cfg(tmp_path)) == folder / "last.ckpt"  # a tie goes to last.ckpt
    torch.save({"global_step": 10}, folder / "step0000010.ckpt")
    assert auto_resume_checkpoint(cfg(tmp_path)) == folder / "step0000010.ckpt"
    (folder / "last.ckpt").write_bytes(b"damaged")  # skipped with a warning, the others still count
    assert auto_resume_checkpoint(cfg(tmp_path)) == folder / "step0000010.ckpt"
