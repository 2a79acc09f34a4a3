import re

import pytest

from trainer.optim import OptimConfig, build_optimizer, format_param_table, route_parameters


def _muon(routes):
    return {r.name for r in routes if r.optimizer == "muon"}


def _trainable(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def _group_param_ids(optimizer):
    return [id(p) for g in optimizer.param_groups for p in g["params"]]


def test_stage1_routes_adapter_only(ltx_stage1, expected_names):
    routes = route_parameters(ltx_stage1, OptimConfig())
    assert {r.name for r in routes} == _trainable(ltx_stage1)
    assert all(n.startswith("audio_projection.") or ".audio_attn." in n for n in _trainable(ltx_stage1))
    assert _muon(routes) == expected_names["adapter_muon"]

    by_name = {r.name: r for r in routes}
    adamw = {
        "audio_projection.pos_embed": "not an nn.Linear weight",
        "audio_projection.in_proj.weight": "adamw_patterns",
        "audio_projection.in_proj.bias": "bias",
        "audio_projection.mlp.0.bias": "bias",
        "audio_projection.temporal_pool.weight": "convolution",
        "audio_projection.temporal_pool.bias": "bias",
        "audio_projection.norm.weight": "norm",
        "audio_projection.norm.bias": "bias",
        "transformer_blocks.0.audio_attn.norm_q.weight": "norm",
        "transformer_blocks.1.audio_attn.norm_k.weight": "norm",
        "transformer_blocks.1.audio_attn.to_out.bias": "bias",
    }
    for name, reason in adamw.items():
        assert by_name[name].optimizer == "adamw", name
        assert reason in by_name[name].reason, (name, by_name[name].reason)
    assert by_name["audio_projection.pos_embed"].shape == (5, 3, 8)


def test_stage2_routes_lora_and_adapter(ltx_stage2, expected_names):
    routes = route_parameters(ltx_stage2, OptimConfig(lr_adam=1e-4))
    names = {r.name for r in routes}
    assert names == _trainable(ltx_stage2)
    assert expected_names["lora"] <= names
    assert not any(".base_layer." in n for n in names)
    assert _muon(routes) == expected_names["adapter_muon"] | expected_names["lora"]
    assert all("LoRA" in r.reason for r in routes if r.name in expected_names["lora"])


def test_stage2_lora_on_adamw(ltx_stage2, expected_names):
    routes = route_parameters(ltx_stage2, OptimConfig(lora_optimizer="adamw"))
    assert _muon(routes) == expected_names["adapter_muon"]
    lora = [r for r in routes if r.name in expected_names["lora"]]
    assert lora and all(r.optimizer == "adamw" and "lora_optimizer=adamw" in r.reason for r in lora)


def test_full_model_rules(ltx_full, expected_names):
    routes = route_parameters(ltx_full, OptimConfig())
    by_name = {r.name: r for r in routes}
    assert set(by_name) == {n for n, _ in ltx_full.named_parameters()}
    hidden = {
        f"transformer_blocks.{i}.{a}.{m}.weight"
        for i in range(2)
        for a in ("attn1", "attn2")
        for m in ("to_q", "to_k", "to_v", "to_out.0")
    } | {f"transformer_blocks.{i}.ff.net.{m}.weight" for i in range(2) for m in ("0.proj", "2")}
    assert _muon(routes) == hidden | expected_names["adapter_muon"]
    for name in (
        "proj_in.weight",
        "proj_out.weight",
        "time_embed.linear.weight",
        "time_embed.emb.timestep_embedder.linear_1.weight",
        "caption_projection.linear_1.weight",
        "caption_projection.linear_2.weight",
    ):
        assert by_name[name].optimizer == "adamw" and "adamw_patterns" in by_name[name].reason, name
    # 2-D but not a Linear weight: the shape alone must not send it to Muon.
    assert by_name["scale_shift_table"].optimizer == "adamw"
    assert by_name["transformer_blocks.0.scale_shift_table"].shape == (6, 32)
    assert by_name["transformer_blocks.0.scale_shift_table"].optimizer == "adamw"
    assert by_name["transformer_blocks.0.attn1.norm_q.weight"].optimizer == "adamw"
    assert all(by_name[n].optimizer == "adamw" for n in by_name if n.endswith(".bias"))
    assert all(len(r.shape) == 2 for r in routes if r.optimizer == "muon")


def test_name_adamw_puts_everything_on_adamw(ltx_stage2):
    cfg = OptimConfig(name="adamw")
    routes = route_parameters(ltx_stage2, cfg)
    assert routes and all(r.optimizer == "adamw" for r in routes)
    bundle = build_optimizer(ltx_stage2, cfg)
    assert bundle.optimizer.muon is None
    assert {g["optimizer"] for g in bundle.optimizer.param_groups} == {"adamw"}
    assert sorted(_group_param_ids(bundle.optimizer)) == sorted(
        id(p) for p in ltx_stage2.parameters() if p.requires_grad
    )


def test_custom_pattern_forces_adamw(ltx_stage1):
    cfg = OptimConfig(adamw_patterns=[*OptimConfig().adamw_patterns, r"audio_attn\.to_out\."])
    by_name = {r.name: r for r in route_parameters(ltx_stage1, cfg)}
    route = by_name["transformer_blocks.0.audio_attn.to_out.weight"]
    assert route.optimizer == "adamw" and "to_out" in route.reason
    assert by_name["transformer_blocks.0.audio_attn.to_q.weight"].optimizer == "muon"


def test_no_patterns_sends_input_layers_to_muon(ltx_full):
    by_name = {r.name: r for r in route_parameters(ltx_full, OptimConfig(adamw_patterns=[]))}
    assert by_name["audio_projection.in_proj.weight"].optimizer == "muon"
    assert by_name["proj_in.weight"].optimizer == "muon"
    # Structural rules do not depend on patterns: a 2-D tensor that is not a Linear weight stays on AdamW.
    for name in ("audio_projection.pos_embed", "scale_shift_table", "transformer_blocks.1.scale_shift_table"):
        assert by_name[name].optimizer == "adamw", name
        assert "not an nn.Linear weight" in by_name[name].reason, name
    assert by_name["audio_projection.temporal_pool.weight"].optimizer == "adamw"


@pytest.mark.parametrize("stage", ["ltx_stage1", "ltx_stage2"])
def test_frozen_params_never_in_groups(stage, request):
    model = request.getfixturevalue(stage)
    bundle = build_optimizer(model, OptimConfig(adam_weight_decay=0.01))
    ids = _group_param_ids(bundle.optimizer)
    assert len(ids) == len(set(ids))
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    frozen = {id(p) for p in model.parameters() if not p.requires_grad}
    assert frozen, "fixture should freeze the base model"
    assert set(ids) == trainable
    assert not set(ids) & frozen
    for group in bundle.optimizer.param_groups:
        if group["optimizer"] == "muon":
            assert all(p.ndim == 2 for p in group["params"])


def test_weight_decay_groups(ltx_stage1):
    bundle = build_optimizer(ltx_stage1, OptimConfig(adam_weight_decay=0.05, muon_weight_decay=0.001))
    groups = {g["name"]: g for g in bundle.optimizer.param_groups}
    assert set(groups) == {"muon", "adamw", "adamw_no_decay"}
    assert groups["muon"]["weight_decay"] == 0.001
    assert groups["adamw"]["weight_decay"] == 0.05
    assert groups["adamw_no_decay"]["weight_decay"] == 0.0
    decayed = set(groups["adamw"]["param_names"])
    assert decayed == {"audio_projection.in_proj.weight", "audio_projection.temporal_pool.weight"}
    assert "audio_projection.pos_embed" in groups["adamw_no_decay"]["param_names"]
    # Without AdamW decay there is a single AdamW group.
    plain = build_optimizer(ltx_stage1, OptimConfig())
    assert [g["name"] for g in plain.optimizer.param_groups] == ["muon", "adamw"]


def test_param_table_lists_every_trainable(ltx_stage2):
    bundle = build_optimizer(ltx_stage2, OptimConfig(lr_adam=1e-4, warmup_steps=10))
    table = bundle.table()
    for name, param in ltx_stage2.named_parameters():
        if param.requires_grad:
            assert re.search(rf"^{re.escape(name)}\s", table, re.M), name
        else:
            assert not re.search(rf"^{re.escape(name)}\s", table, re.M), name
    assert "1.000e-02" in table and "1.000e-04" in table  # base lrs, not the warm-up lr of 0
    lines = table.splitlines()
    header = next(line for line in lines if line.startswith("name"))
    for col in ("shape", "optimizer", "base_lr", "reason"):
        assert col in header
    total = next(line for line in lines if " total " in line)
    n_trainable = sum(p.numel() for p in ltx_stage2.parameters() if p.requires_grad)
    assert f"{n_trainable:,}" in total
    # Same text from the function.
    assert format_param_table(bundle.routes, bundle.optimizer) == table
