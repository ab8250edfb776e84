from __future__ import annotations

import pytest
from framework_sample import Sample


@pytest.fixture
def sample() -> Sample:
    return Sample()
