"""The package version, in one place for the metadata and the User-Agent."""

__all__ = ["__version__"]

__version__ = "0.1.0"
