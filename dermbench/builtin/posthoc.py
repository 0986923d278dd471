"""Built-in posthoc."""

from dermbench.hookspecs import hookimpl  # noqa: F401
