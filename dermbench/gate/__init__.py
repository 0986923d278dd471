"""The image-quality gate: an autoencoder that refuses images unlike the training images (paper 002),
scored as selective prediction, with out-of-distribution sets (see docs/gate.md)."""

GATES = ("autoencoder",)
CORRUPTIONS = ("noise", "blank", "blur", "jpeg", "invert", "black_corners")  # dermbench.gate.ood


def check_gate_settings(gate: str, ood_data: dict) -> None:
    """The gate's name and the OOD sets' form, before anything is built (no torch needed)."""
    from dermbench.errors import ConfigError

    if gate and gate not in GATES:
        raise ConfigError(f"--gate must be one of {', '.join(GATES)}, got {gate!r}")
    if ood_data and not gate:
        raise ConfigError("--ood-data measures a gate: add --gate autoencoder")
    for name, path in ood_data.items():
        if not path and name not in CORRUPTIONS:
            raise ConfigError(
                f"--ood-data {name!r}: no such corruption (known: {', '.join(CORRUPTIONS)}); a dataset needs NAME=PATH"
            )
