"""pytest integration: a running edge for tests (``exo_edge``)."""
