"""Command line (placeholder, filled in below)."""


def main() -> None:  # pragma: no cover
    raise SystemExit("not yet")
