"""Built-in methods."""

from dermbench.hookspecs import hookimpl  # noqa: F401
