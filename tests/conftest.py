"""Fixtures of the project's own tests."""

from __future__ import annotations

import os

import pytest

from fakes.edge import Edge

pytest_plugins = ["pytester"]


@pytest.fixture
def edge(exo_edge_clean: Edge) -> Edge:
    """The session's running edge, reset to the bundled contoso tenant."""
    return exo_edge_clean


@pytest.fixture
def chromium() -> str:
    """Debian's headless Chromium (and its WebDriver, for the tests that type into pages)."""
    from tests.helpers import need

    return need("chromium", "chromium chromium-driver")


def overrides(edge: Edge, **patch: object) -> None:
    """Serve the tenant with ``patch`` deep-merged over it, from the next command on."""
    tenant = edge.tenant.with_overrides(patch)
    edge.on_loop(lambda: edge.set_tenant(tenant))


def _disable_a_check_for_the_mutation_smoke_test() -> None:
    """``EXO_DISABLE_CHECK=port`` makes that check pass whatever it sees (tests/mutation_smoke.py)."""
    name = os.environ.get("EXO_DISABLE_CHECK")
    if not name:
        return
    from harness.checks import CHECKS, Outcome

    def always_passes(self, obs):  # noqa: ANN001, ANN202
        return Outcome(name, True, "disabled by the mutation smoke test")

    CHECKS[name].evaluate = always_passes  # type: ignore[method-assign]


_disable_a_check_for_the_mutation_smoke_test()
