"""pytest integration of exo-edge.

The plugin is registered through the ``pytest11`` entry point. It provides ``exo_edge``: one
running edge for the whole test session, on loopback, with its state (CA, records, store) in a
session temporary directory. ``exo_edge_clean`` hands the same edge to a test with the tenant,
faults, quotas and store put back as they were, so tests do not see each other's mail.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fakes.edge import Edge, EdgeThread
from fakes.exo.tenant import default_tenant


@pytest.fixture(scope="session")
def exo_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    """A running edge serving the bundled contoso tenant on 127.0.0.1 (ephemeral ports)."""
    runner = EdgeThread(Edge(default_tenant(), state_dir=tmp_path_factory.mktemp("exo-edge")))
    edge = runner.start()
    try:
        yield edge
    finally:
        runner.stop()


@pytest.fixture
def exo_edge_clean(exo_edge: Edge) -> Iterator[Edge]:
    """The session's edge, reset to the bundled tenant with no mail, faults or quota use."""
    reset(exo_edge)
    yield exo_edge
    reset(exo_edge)


def reset(edge: Edge) -> None:
    edge.set_tenant(default_tenant())
    edge.clear_faults()
    edge.configure_tls()
    edge.state.ledger.reset()
    edge.store.clear()
