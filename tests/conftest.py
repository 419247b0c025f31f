import os
from pathlib import Path

import pytest

os.environ.setdefault("MIRROR_NO_PROGRESS", "1")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"optional real TCGA data not present at {SHARED_DATA}")
    return SHARED_DATA
