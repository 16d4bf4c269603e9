"""The one version of the package: hatch reads it for the wheel, `__version__` re-exports it."""

__all__ = ["__version__"]

__version__ = "0.1.0"
