"""Built-in datasets."""

from dermbench.hookspecs import hookimpl  # noqa: F401
