"""A sender from its spec, as ``--exo-sender`` and ``exoedge run --sender`` give it: a reference
profile, a shell command, a Python callable, or a person (apart from ``harness.senders`` so that
the senders do not import the reference profiles that import them)."""

from __future__ import annotations

import shlex

from fakes.exo.errors import ExoEdgeError
from harness.reference import PROFILES, ReferenceSender
from harness.senders import CommandSender, ManualSender, PythonSender, Sender


def parse_sender(spec: str, option: str = "submission", connector: str | None = None) -> Sender:
    """``reference:NAME``, ``command:...``, ``python:mod:fn`` or ``manual``."""
    kind, _, rest = spec.partition(":")
    if kind == "reference":
        if rest not in PROFILES:
            raise ExoEdgeError(f"--exo-sender {spec!r}: no reference profile {rest!r}; "
                               f"known: {', '.join(sorted(PROFILES))}")
        return ReferenceSender(PROFILES[rest])
    if kind == "command" and rest.strip():
        return CommandSender(rest, option, connector)
    if kind == "python" and ":" in rest:
        return PythonSender(rest, option, connector)
    if spec == "manual":
        return ManualSender(option, connector)
    raise ExoEdgeError(f"--exo-sender {spec!r}: expected reference:NAME, command:CMD, python:module:callable "
                       f"or manual (e.g. {shlex.quote('command:swaks --server $EXO_ADDR ...')})")
