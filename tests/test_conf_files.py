"""The YAML files under conf/: experiments choose group options by override, so the command line can change them."""

from __future__ import annotations

from trainer.config.compose import compose_with_choices


def test_a_command_line_group_choice_beats_the_experiments():
    cfg, choices = compose_with_choices("train", ["experiment=edityourself_stage1", "logger=csv"])
    assert choices["logger"] == "csv" and cfg.logger.name == "csv"
    cfg, choices = compose_with_choices("train", ["experiment=edityourself_stage1"])
    assert choices["logger"] == "wandb" and cfg.logger.name == "wandb"
