"""Third-party clients: swaks and curl. Missing ones skip locally, and fail in CI."""

from __future__ import annotations

import os
import shutil

import pytest


def need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not installed (apt-get install -y {package})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def swaks() -> str:
    return need("swaks", "swaks")


@pytest.fixture
def curl() -> str:
    return need("curl", "curl")


@pytest.fixture
def exim() -> str:
    return need("exim", "exim4-daemon-light")
