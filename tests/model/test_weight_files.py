"""Strict loading of weight files from anywhere: every network of talkdit (metric, filter, backbone) loads
through :func:`trainer.model.weights.read_state_dict` and :func:`~trainer.model.weights.load_strict`."""

import pytest
import torch
from torch import nn

from trainer.model.weights import load_strict, read_state_dict


def net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2))


def test_a_matching_file_loads_every_tensor(tmp_path):
    torch.manual_seed(0)
    saved = net()
    torch.save(saved.state_dict(), tmp_path / "w.pth")
    model = net()
    load_strict(model, read_state_dict(tmp_path / "w.pth", "the test layout"), tmp_path / "w.pth", "the test layout")
    for name, value in saved.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name


def test_differences_are_named_with_the_file_and_layout(tmp_path):
    state = net().state_dict()
    state["0.weight"] = torch.zeros(4, 3, 5, 5)
    del state["2.bias"]
    state["3.weight"] = torch.zeros(1)
    model = net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError) as err:
        load_strict(model, state, tmp_path / "w.pth", "the test layout")
    msg = str(err.value)
    assert str(tmp_path / "w.pth") in msg and "the test layout" in msg
    assert "1 shape mismatches (first: 0.weight" in msg and "missing keys (first: 2.bias)" in msg
    assert "unexpected keys (first: 3.weight)" in msg
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())  # nothing half-loaded


def test_batchnorm_counters_may_be_absent_only_when_allowed(tmp_path):
    state = {k: v for k, v in net().state_dict().items() if not k.endswith("num_batches_tracked")}
    with pytest.raises(ValueError, match=r"missing keys \(first: 1\.num_batches_tracked\)"):
        load_strict(net(), state, tmp_path / "old.pth", "the test layout")
    load_strict(net(), state, tmp_path / "old.pth", "the test layout", may_lack=(".num_batches_tracked",))


def test_pickled_modules_and_junk_are_refused(tmp_path):
    torch.save(nn.Linear(2, 2), tmp_path / "module.pth")  # a pickled module is refused, not executed
    with pytest.raises(ValueError, match=r"module\.pth is not a state dict readable with weights_only=True"):
        read_state_dict(tmp_path / "module.pth", "the test layout")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(ValueError, match=r"list\.pth does not hold a state dict of tensors \(got list; expected the"):
        read_state_dict(tmp_path / "list.pth", "the test layout")
