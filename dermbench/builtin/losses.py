"""Built-in losses."""

from dermbench.hookspecs import hookimpl  # noqa: F401
