"""Built-in models."""

from dermbench.hookspecs import hookimpl  # noqa: F401
