"""The one error type configuration problems raise."""


class ConfigError(ValueError):
    """A configuration value breaks a rule.

    The message always names the dotted key, the offending value and the rule, so a user can fix the
    override without reading code.

    Args:
        key: Dotted config key, e.g. ``data.num_frames``.
        value: The offending value.
        rule: What was expected, e.g. ``"must be 8k+1 (the VAE compresses time 8x after frame 0)"``.
    """

    def __init__(self, key: str, value: object, rule: str):
        self.key = key
        self.value = value
        self.rule = rule
        super().__init__(f"config key '{key}' = {value!r}: {rule}")
