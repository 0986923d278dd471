"""dermbench: an open benchmark suite for dermatology image classifiers."""

__version__ = "0.1.0"
