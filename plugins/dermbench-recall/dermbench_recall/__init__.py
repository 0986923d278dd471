"""The recall-oriented skin-cancer screening pipeline of Rumale et al., as dermbench methods."""

__version__ = "0.1.0"
