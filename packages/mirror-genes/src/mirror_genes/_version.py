"""The installed version, in one place (no module imports the package face for it)."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("mirror-genes")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"
