"""exo-edge's harness: scenarios, checks, senders, the runner and the reports around the edge."""
