"""Built-in optim."""

from dermbench.hookspecs import hookimpl  # noqa: F401
