"""Third-party clients: swaks and curl. Missing ones skip locally, and fail in CI."""

from __future__ import annotations

import pytest

from tests.helpers import need


@pytest.fixture
def swaks() -> str:
    return need("swaks", "swaks")


@pytest.fixture
def curl() -> str:
    return need("curl", "curl")


@pytest.fixture
def exim() -> str:
    return need("exim", "exim4-daemon-light")
