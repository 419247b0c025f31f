"""The installed version, in one place."""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("mirror-model")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"
