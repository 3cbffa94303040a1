"""The ``exoedge`` command: serve the edge, mint tokens, show the lab CA.

    exoedge serve [--tenant FILE] [--host 127.0.0.1] [--port NAME=PORT ...] [--state-dir DIR]
    exoedge token --mailbox ADDR [--app-id ID] [--tenant FILE] [--state-dir DIR] [--expires-in S]
    exoedge ca [--state-dir DIR]

``serve`` prints one JSON object as its first line on stdout (every endpoint's host:port, the
CA file, the records file, the store) and runs until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path

from fakes.edge import ENDPOINT_NAMES, Edge
from fakes.exo.errors import ExoEdgeError
from fakes.exo.tenant import Tenant, default_tenant
from fakes.exo.tokens import TokenAuthority
from fakes.tls import LabCA

DEFAULT_STATE_DIR = Path("state")


def _tenant(path: str | None) -> Tenant:
    return Tenant.load(path) if path else default_tenant()


def _ports(pairs: list[str]) -> dict[str, int]:
    ports: dict[str, int] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not value.isdigit() or not 0 <= int(value) <= 65535:
            raise SystemExit(f"exoedge: --port {pair!r}: expected NAME=PORT, e.g. submission=587")
        if name not in ENDPOINT_NAMES:
            raise SystemExit(f"exoedge: --port {pair!r}: unknown endpoint {name!r}; "
                             f"known: {', '.join(ENDPOINT_NAMES)}")
        ports[name] = int(value)
    return ports


async def _serve(edge: Edge) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await edge.start()
    try:
        print(json.dumps(edge.describe()), flush=True)
        print(f"exo-edge serving tenant {edge.tenant.tenant} ({edge.tenant.mx_host}); "
              f"import {edge.ca.cert_path} on the device; Ctrl-C stops", file=sys.stderr, flush=True)
        await stop.wait()
    finally:
        await edge.stop()
        edge.close()


def cmd_serve(args: argparse.Namespace) -> int:
    edge = Edge(_tenant(args.tenant), state_dir=Path(args.state_dir), host=args.host,
                ports=_ports(args.port))
    asyncio.run(_serve(edge))
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from fakes.edge import tenant_guid

    tenant = _tenant(args.tenant)
    ca = LabCA.open(Path(args.state_dir))
    authority = TokenAuthority(ca.issuer_key, tenant_guid(tenant))
    if tenant.mailbox(args.mailbox) is None:
        print(f"exoedge token: --mailbox {args.mailbox!r} is not a mailbox of tenant "
              f"{tenant.tenant}", file=sys.stderr)
        return 2
    if args.app_id:
        token = authority.mint(now=time.time(), app_id=args.app_id, expires_in=args.expires_in)
    else:
        token = authority.mint(now=time.time(), mailbox=args.mailbox, expires_in=args.expires_in)
    print(token)
    return 0


def cmd_ca(args: argparse.Namespace) -> int:
    ca = LabCA.open(Path(args.state_dir))
    print(ca.cert_path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="exoedge", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the simulated Exchange Online edge")
    serve.add_argument("--tenant", help="tenant YAML file (default: the bundled contoso tenant)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", action="append", default=[], metavar="NAME=PORT",
                       help=f"fix an endpoint's port; names: {', '.join(ENDPOINT_NAMES)}")
    serve.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR),
                       help="CA, token issuer key, records and mail store (default ./state)")
    serve.set_defaults(func=cmd_serve)

    token = sub.add_parser("token", help="print an XOAUTH2 access token the edge accepts")
    token.add_argument("--mailbox", required=True)
    token.add_argument("--app-id", help="mint an app-only token (SMTP.SendAsApp) for this app id")
    token.add_argument("--tenant")
    token.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR))
    token.add_argument("--expires-in", type=float, default=3600.0, metavar="SECONDS")
    token.set_defaults(func=cmd_token)

    ca = sub.add_parser("ca", help="print the path of the lab CA certificate (create it if needed)")
    ca.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR))
    ca.set_defaults(func=cmd_ca)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ExoEdgeError as exc:
        print(f"exoedge: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
