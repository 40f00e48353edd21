import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Tiny test models gain nothing from threads, and OpenMP spin-waiting makes them 100x slower
# whenever another process holds the other core.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))  # so tests can `import tiny`

SHARED = Path(os.environ.get("EDGEDISTILL_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
DSS = SHARED / "datasets" / "dss"


@pytest.fixture
def dss_dir():
    if not (DSS / "README.md").exists():
        pytest.skip(f"DSS datasets not found at {DSS} (set EDGEDISTILL_SHARED)")
    return DSS
