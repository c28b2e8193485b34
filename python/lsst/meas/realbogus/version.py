"""Package version (sconsUtils writes this file in an EUPS build; pip builds use this one)."""

__all__ = ["__version__"]

__version__ = "0.1.0"
