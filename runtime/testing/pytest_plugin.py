"""The ``durable_env`` pytest fixture: a fresh in-process test environment per test.

pytest loads this module by itself once ray-durable is installed (the ``pytest11`` entry
point in pyproject.toml); nothing goes in a conftest. The environment is imported only when
a test asks for the fixture, so other tests pay nothing.

```python
def test_escalates_after_72_hours(durable_env):
    iid = durable_env.start_new(approval_workflow, input="trip")
    assert durable_env.wait_for_completion(iid).output == "escalated trip"
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .environment import DurableTestEnvironment


@pytest.fixture
def durable_env() -> DurableTestEnvironment:
    """A new DurableTestEnvironment (no Ray; time skips to the next timer while waiting)."""
    from .environment import DurableTestEnvironment

    return DurableTestEnvironment()
