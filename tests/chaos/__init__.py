"""The chaos suite: a mixed workload on a real local Ray while processes are killed at random.

Run it with ``python -m tests.chaos --seed N`` from the repository's root (see
``tests/chaos/__main__.py``); ``tests/chaos/test_chaos.py`` runs one seed per placement.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
# Ray workers and the driver subprocesses import the workload (and tests/workflows.py,
# tests/entity_defs.py) by module name, as the test session's conftest arranges for pytest.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")) if p
)
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
