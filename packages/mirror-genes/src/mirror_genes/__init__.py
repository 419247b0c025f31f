"""mirror-genes: TCGA transcriptomics from UCSC Xena into AnnData, and leak-free gene selection.

Namespaces follow scanpy: ``io`` (readers/writers), ``pp`` (preprocessing), ``tl`` (tools:
selection, curation), ``pl`` (plots), ``datasets`` (synthetic cohorts), ``panels``.
"""

from . import cohorts, constants, io, splits, utils  # noqa: E402
from ._errors import (  # noqa: E402
    CohortError,
    DownloadError,
    InputFileError,
    LabelError,
    MirrorGenesError,
    NotFoundError,
    OfflineError,
    OutputPathError,
    PanelError,
    SelectionError,
)
from ._fetch import fetch  # noqa: E402
from ._ingest import ingest, write_h5ad  # noqa: E402
from ._version import __version__

__all__ = [
    "CohortError", "DownloadError", "InputFileError", "LabelError", "MirrorGenesError",
    "NotFoundError", "OfflineError", "OutputPathError", "PanelError", "SelectionError", "__version__", "cohorts",
    "constants", "datasets", "fetch", "ingest",
    "io", "panels", "pl", "pp", "select", "splits", "tl", "utils", "write_h5ad",
]


# Heavy namespaces (scikit-learn, matplotlib) load on first use, so that reading files
# does not pay for them.
_LAZY_MODULES = ("datasets", "panels", "pl", "pp", "tl")


def __getattr__(name: str):
    import importlib

    if name in _LAZY_MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    if name == "select":
        from ._select import select

        return select
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_MODULES) | {"select"})
