"""The ``dermbench`` command (:mod:`dermbench.cli.main`) and its text output."""

from dermbench.cli.main import build_parser, entry, main

__all__ = ["build_parser", "entry", "main"]
