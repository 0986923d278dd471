"""Built-in stages."""

from dermbench.hookspecs import hookimpl  # noqa: F401
