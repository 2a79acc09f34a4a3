"""talkdit's Hydra config tree (``train.yaml``, ``data_prep.yaml``, ``launch.yaml`` and their groups).

A package only so that its YAML files ship inside an installed talkdit and are found with
``importlib.resources`` (:data:`trainer.config.compose.CONF_DIR`); it holds no code.
"""
