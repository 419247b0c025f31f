"""Shared helpers that other packages build on: errors, atomic outputs, progress, provenance.

This is the public door to them (mirror-model imports this module, never the private ones).
"""

from ._atomic import atomic_path, current_umask
from ._download import file_lock
from ._errors import InputFileError, MirrorGenesError, OutputPathError
from ._paths import check_output, ensure_dir
from ._progress import byte_bar, step_bar
from ._progress import enabled as progress_enabled
from ._provenance import file_record, now_utc, sha256_file, versions

__all__ = [
    "InputFileError", "MirrorGenesError", "OutputPathError", "atomic_path", "byte_bar",
    "check_output", "current_umask", "ensure_dir", "file_lock", "file_record", "now_utc",
    "progress_enabled", "sha256_file", "step_bar", "versions",
]
