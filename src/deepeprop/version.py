"""The package's version, from one source: the package metadata (pyproject.toml). Imports nothing of the package,
so any module can import it at its top (the package root re-exports it as ``deepeprop.__version__``)."""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("deepeprop")
except PackageNotFoundError:  # imported from a source tree that is not installed
    __version__ = "0+unknown"
