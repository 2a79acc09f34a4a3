"""Training configuration: the dataclass schema, its rules, Hydra composition and the shared command line."""
