"""The version of tead, at the bottom of the layers so that any module may show it."""

__version__ = "0.1.0"
