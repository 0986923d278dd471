"""``python -m dermbench.cli``: the ``dermbench`` command."""

from dermbench.cli.main import entry

entry()
