"""Fixtures of the project's own tests."""

from __future__ import annotations

import pytest

from fakes.edge import Edge

pytest_plugins = ["pytester"]


@pytest.fixture
def edge(exo_edge_clean: Edge) -> Edge:
    """The session's running edge, reset to the bundled contoso tenant."""
    return exo_edge_clean


def overrides(edge: Edge, **patch: object) -> None:
    """Serve the tenant with ``patch`` deep-merged over it, from the next command on."""
    edge.set_tenant(edge.tenant.with_overrides(patch))
