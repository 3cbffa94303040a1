"""exo-edge's simulated Exchange Online edge: the sans-IO model (``fakes.exo``) and its adapters."""
