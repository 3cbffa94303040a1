"""The ``exoedge`` command: serve the edge, mint tokens, show the lab CA.

    exoedge serve [--tenant FILE] [--host 127.0.0.1] [--port NAME=PORT ...] [--state-dir DIR]
    exoedge token --mailbox ADDR [--app-id ID] [--tenant FILE] [--state-dir DIR] [--expires-in S]
    exoedge run [--sender SPEC] [--option OPTION] [--scenarios DIR] [--report DIR] [--case TEXT ...]
    exoedge schema > scenarios/schema.json
    exoedge ca [--state-dir DIR]
    exoedge ca export [--format pem|der] [--out FILE] [--state-dir DIR]
    exoedge scenarios list|show ID|validate [--scenarios DIR] [--tenant FILE]
    exoedge report --compare OLD.json NEW.json

``serve`` prints one JSON object as its first line on stdout (every endpoint's host:port, the
CA file, the records file, the store) and runs until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import signal
import ssl
import sys
import tempfile
import time
from pathlib import Path

from fakes.edge import Edge, EdgeThread
from fakes.exo.errors import ExoEdgeError
from fakes.exo.names import ENDPOINT_NAMES, WELL_KNOWN_PORTS
from fakes.exo.state import TARPIT
from fakes.exo.tenant import Tenant, default_tenant
from fakes.exo.tokens import TokenAuthority
from fakes.tls import LabCA
from harness.pacing import Pacing, device_settings

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


def _addresses(pairs: list[str]) -> dict[str, str]:
    """``--address submission=127.0.0.2``: an endpoint's own address."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, address = pair.partition("=")
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise SystemExit(f"exoedge: --address {pair!r}: expected NAME=ADDRESS, e.g. mx=127.0.0.3") from None
        if not sep or name not in ("submission", "legacy", "mx", "identity"):
            raise SystemExit(f"exoedge: --address {pair!r}: an address of its own is for submission, legacy, mx "
                             "or identity")
        out[name] = address
    return out


async def _serve(edge: Edge, *, lab: bool = False, live_port: int | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await edge.start()
    try:
        if live_port is not None:
            from harness.fleet import live_verdict

            host, port = await edge.start_live(
                live_port, on_closed=lambda s: print(s.line(), file=sys.stderr, flush=True),
                judge=lambda events: live_verdict(events, edge.tenant))
        print(json.dumps(edge.describe()), flush=True)
        if lab:
            print(f"Set on the device:\n{device_settings(edge)}", file=sys.stderr, flush=True)
        if live_port is not None:
            print(f"Live view: http://{host}:{port}/ (and one line per session here)", file=sys.stderr, flush=True)
        print(f"exo-edge serving tenant {edge.tenant.tenant} ({edge.tenant.mx_host}); "
              f"import {edge.ca.cert_path} on the device; Ctrl-C stops", file=sys.stderr, flush=True)
        await stop.wait()
    finally:
        await edge.stop()
        edge.close()


# ``serve --lab``: what a device is set up with, on the address given
LAB_PORTS = {name: WELL_KNOWN_PORTS[name] for name in ("mx", "submission", "implicit-tls", "dns", "identity")}
LIVE_PORT = 8025  # the live view's, in a lab (where Mailpit's web page is too)


def cmd_serve(args: argparse.Namespace) -> int:
    ports = _ports(args.port)
    hosts = _addresses(args.address)
    if args.lab:
        # smtp.office365.com:25 is submission when it has an address of its own, as in the service
        own_25 = hosts.get("submission", args.host) != hosts.get("mx", args.host)
        ports = LAB_PORTS | ({"submission-25": WELL_KNOWN_PORTS["submission-25"]} if own_25 else {}) | ports
    edge = Edge(_tenant(args.tenant), state_dir=Path(args.state_dir), host=args.host,
                ports=ports, advertise=args.advertise, tarpit=args.tarpit,
                keylog=Path(args.keylog) if args.keylog else None, hosts=hosts)
    live_port = args.live_port if args.live_port is not None else (LIVE_PORT if args.lab else None)
    asyncio.run(_serve(edge, lab=args.lab, live_port=live_port))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run the catalog against one sender, print a line per case, write the reports."""
    from harness.catalog import Catalog
    from harness.report import Run, tenant_digest, write_reports
    from harness.runner import Runner, Verdict
    from harness.sender_spec import parse_sender

    tenant = _tenant(args.tenant)
    sender = parse_sender(args.sender, args.option, args.connector)
    catalog = Catalog.choose(Path(args.scenarios) if args.scenarios else None, args.catalog_mode)
    scenarios = [s for s in catalog.load(tenant) if not args.case or any(pattern in s.id for pattern in args.case)]
    if not scenarios:
        where = ", ".join(str(root) for root in catalog.roots)
        print(f"exoedge run: no scenario in {where} matches {' or '.join(args.case)}", file=sys.stderr)
        return 2
    state_dir = Path(args.state_dir) if args.state_dir else Path(tempfile.mkdtemp(prefix="exo-edge-"))
    manual = args.sender == "manual"
    with EdgeThread(Edge(tenant, state_dir=state_dir, host=args.host, ports=_ports(args.port))) as edge:
        runner = Runner(edge, sender, tenant=tenant, manual_wait=args.wait if manual else None)
        pacing = Pacing.for_terminal() if manual else None
        run = Run(sender=sender.name, tenant=tenant.tenant, edge=edge.describe(), secrets=edge.secrets,
                  catalog=catalog.describe(), sender_name=args.sender_name, sender_version=args.sender_version,
                  notes=args.note, tenant_digest=tenant_digest(tenant))
        width = max(len(s.id) for s in scenarios)
        try:
            if pacing is not None:
                edge.records.watch(pacing.sessions)  # the connections, shown as they close
                pacing.ready(device_settings(edge), args.wait)
            for scenario in scenarios:
                result = pacing.run(runner, scenario) if pacing is not None else runner.run(scenario)
                run.results.append(result)
                print(f"{result.verdict:<10} {scenario.id:<{width}}  {result.reason[:160]}", flush=True)
        finally:  # interrupted or not, what was judged is written
            run.finished = time.time()
            paths = write_reports(Path(args.report) / run.name, run)
    from harness.report.causes import causes, option_verdicts

    summary = ", ".join(f"{count} {verdict}" for verdict, count in run.summary().items() if count)
    print(f"\n{summary}")
    for option in option_verdicts(run.results, causes(run.results)):
        conforms = {True: "yes", False: "no", None: "not judged"}[option.conforms]
        print(f"  {option.title}: {conforms}: {option.because}")
    print(f"report: {paths['html']}")
    bad = {Verdict.FAIL, Verdict.ERROR}
    return 1 if any(r.verdict in bad for r in run.results) else 0


def cmd_report(args: argparse.Namespace) -> int:
    """``RESULTS.json``: its page rendered anew beside it; ``--compare OLD NEW``: a case per line as
    it changed, non-zero when a case that passed now fails."""
    from harness.report import load_run, write_html
    from harness.report.compare import compare, load_results

    if args.results:
        results = Path(args.results)
        print(write_html(results.parent / "index.html", load_run(results)))
        return 0
    if not args.compare:
        raise ExoEdgeError("report: give a results.json to render, or --compare OLD.json NEW.json")
    old, new = (load_results(Path(p)) for p in args.compare)
    comparison = compare(old, new)
    for line in comparison.lines():
        print(line)
    return 1 if comparison.broken else 0


def cmd_judge(args: argparse.Namespace) -> int:
    """What a capture, or the lab's records, show of each device: the fleet report (index.html and
    fleet.json under --report DIR), and with --json FILE the same as data; non-zero when a device
    would fail at Exchange Online."""
    from harness.capture import PORTS
    from harness.decrypt import read_keylog
    from harness.fleet import MAX_DEVICES, group, judge, read
    from harness.report.fleet import write_html, write_json

    source = Path(args.source)
    tenant = _tenant(args.tenant) if args.tenant else None
    keys = read_keylog(Path(args.keylog)) if args.keylog else None
    submission = []
    for pair in args.address:  # where smtp.office365.com was, on the devices' network (its 25 is not the MX's)
        (name, address), = _addresses([pair]).items()
        if name != "submission":
            raise SystemExit(f"exoedge judge: --address {pair!r}: judge takes the address of smtp.office365.com "
                             "(submission=ADDRESS); the MX is whatever else port 25 reaches")
        submission.append(address)
    events, capture = read(source, {**PORTS, **{port: name for name, port in _ports(args.port).items()}}, keys,
                           submission)
    fleet = group(events)
    judged = [judge(device, tenant=tenant) for device in fleet.values()]
    unfollowed = len(fleet.unfollowed)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    directory = Path(args.report) / f"fleet-{stamp}"
    page = write_html(directory / "index.html", judged, str(source), capture=capture, keylog=args.keylog,
                      unfollowed=unfollowed)
    write_json(directory / "fleet.json", judged, str(source), unfollowed=unfollowed)
    if args.json:
        write_json(Path(args.json), judged, str(source), unfollowed=unfollowed)
    failing = sum(j.verdict == "would fail" for j in judged)
    more = f" ({unfollowed} more address(es) past the first {MAX_DEVICES:,} not followed)" if unfollowed else ""
    print(f"{len(judged)} device(s), {failing} would fail at Exchange Online{more}: {page}")
    return 1 if failing else 0


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


def cmd_schema(args: argparse.Namespace) -> int:
    from harness.scenario import schema_text

    sys.stdout.write(schema_text())
    return 0


def cmd_ca(args: argparse.Namespace) -> int:
    ca = LabCA.open(Path(args.state_dir))
    if args.action != "export":
        print(ca.cert_path)
        return 0
    pem = ca.cert_path.read_bytes()
    data = pem if args.format == "pem" else ssl.PEM_cert_to_DER_cert(pem.decode())
    if args.out:
        Path(args.out).write_bytes(data)
        print(args.out)
    elif args.format == "pem":
        sys.stdout.write(pem.decode())
    else:
        sys.stdout.buffer.write(data)
    return 0


def cmd_scenarios(args: argparse.Namespace) -> int:
    from harness.catalog import Catalog

    tenant = _tenant(args.tenant)
    catalog = Catalog.choose(Path(args.scenarios) if args.scenarios else None, "add")
    scenarios = catalog.load(tenant)  # validate: every bad file reported, with file, line, key, value
    if args.action == "validate":
        print(f"{len(scenarios)} scenario(s) valid in {', '.join(str(r) for r in catalog.roots)}")
        return 0
    if args.action == "list":
        width = max(len(s.id) for s in scenarios)
        for s in scenarios:
            print(f"{s.id:<{width}}  {s.severity:<6}  {s.title}")
        return 0
    found = [s for s in scenarios if s.id == args.id]
    if not found:
        raise ExoEdgeError(f"no scenario {args.id!r}; exoedge scenarios list shows them")
    print(Path(found[0].path).read_text(encoding="utf-8"), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="exoedge", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the simulated Exchange Online edge")
    serve.add_argument("--tenant", help="tenant YAML file (default: the tenant bundled with exo-edge)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--advertise", metavar="ADDRESS",
                       help="the address the lab DNS gives out for the edge's names (default: --host; "
                            "required when --host is 0.0.0.0 or ::)")
    serve.add_argument("--port", action="append", default=[], metavar="NAME=PORT",
                       help=f"fix an endpoint's port; names: {', '.join(ENDPOINT_NAMES)}")
    serve.add_argument("--lab", action="store_true",
                       help="the standard ports on --host (25, 465, 587, DNS 53, HTTPS 443) and the device settings")
    serve.add_argument("--tarpit", type=float, default=TARPIT, metavar="SECONDS",
                       help=f"how long an error reply waits, as Exchange Online's do (default {TARPIT:g}; 0: at once)")
    serve.add_argument("--live-port", type=int, metavar="PORT",
                       help=f"serve the live view of the sessions on this port of --host (with --lab: {LIVE_PORT})")
    serve.add_argument("--address", action="append", default=[], metavar="NAME=ADDRESS",
                       help="an address of its own for smtp.office365.com (submission, with its 25 and 465), "
                            "smtp-legacy (legacy), the tenant's MX (mx) or login.microsoftonline.com (identity); "
                            "the lab DNS answers each name with it")
    serve.add_argument("--keylog", metavar="FILE", help="write the lab's TLS keys there (NSS key log, mode 0600), "
                                                        "to open a lab capture decrypted in Wireshark")
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

    run = sub.add_parser("run", help="run the conformance catalog against a sender and write the report")
    run.add_argument("--sender", default="reference:submission",
                     help="reference:NAME | command:CMD | python:module:callable | manual")
    run.add_argument("--option", default="submission", choices=["submission", "direct-send", "relay"],
                     help="the option a command, python or manual sender uses")
    run.add_argument("--connector", choices=["ip", "certificate"], help="relay senders: which connector")
    run.add_argument("--tenant")
    run.add_argument("--scenarios", metavar="DIR", help="your own scenario directory (default: the bundled "
                                                        "catalog alone)")
    run.add_argument("--catalog-mode", choices=["add", "replace"], default="add",
                     help="add: your cases join the bundled catalog (same id: yours wins); replace: only yours")
    run.add_argument("--case", action="append", default=[], metavar="TEXT", help="only cases whose id has TEXT")
    run.add_argument("--report", default="reports", help="where reports/<run>/ is written (and reports/latest)")
    run.add_argument("--wait", type=float, default=180.0, metavar="SECONDS",
                     help="manual sender: how long each case waits for the device (default 180)")
    run.add_argument("--sender-name", help="the device or app under test, as the report names it")
    run.add_argument("--sender-version", help="its firmware or release")
    run.add_argument("--note", action="append", default=[], help="a note for the report (repeatable)")
    run.add_argument("--state-dir", help="CA, records and store (default: a temporary directory)")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", action="append", default=[], metavar="NAME=PORT")
    run.set_defaults(func=cmd_run)

    report = sub.add_parser("report", help="render a run's page anew, or compare two runs: fixed, broken, unchanged")
    report.add_argument("results", nargs="?", metavar="RESULTS.json", help="render index.html beside it anew")
    report.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"),
                        help="results.json of the earlier run (firmware 2.1) and of the later one (2.2)")
    report.set_defaults(func=cmd_report)

    judge = sub.add_parser("judge", help="judge every device a capture (pcap, pcapng) or the lab's records show")
    judge.add_argument("source", metavar="CAPTURE|STATE_DIR", help="a capture file, exoedge serve's --state-dir, "
                                                                    "or its records.jsonl")
    judge.add_argument("--keylog", metavar="FILE", help="the TLS key log (NSS format: exoedge serve --keylog, "
                       "SSLKEYLOGFILE) that opens what went inside TLS: the AUTH mechanism, the message, "
                       "Exchange's replies")
    judge.add_argument("--address", action="append", default=[], metavar="submission=ADDRESS",
                       help="an address smtp.office365.com had on the devices' network: port 25 there is SMTP "
                            "AUTH submission, not direct send (a capture's own DNS answers say so where it has them)")
    judge.add_argument("--tenant", help="the tenant file (its connectors tell relays from direct send)")
    judge.add_argument("--report", default="reports", metavar="DIR", help="write the fleet report under DIR")
    judge.add_argument("--json", metavar="FILE", help="also write one record per device to FILE")
    judge.add_argument("--port", action="append", default=[], metavar="NAME=PORT",
                       help="a capture's server port and the endpoint it reaches (a lab on its own ports): "
                            "submission=2587, mx=2525, implicit-tls=2465, identity=8443")
    judge.set_defaults(func=cmd_judge)

    schema = sub.add_parser("schema", help="print the JSON Schema of scenario files (scenarios/schema.json)")
    schema.set_defaults(func=cmd_schema)

    ca = sub.add_parser("ca", help="print the path of the lab CA certificate (create it if needed), or export it")
    ca.add_argument("action", nargs="?", choices=["export"], help="export: write the certificate itself")
    ca.add_argument("--format", choices=["pem", "der"], default="pem", help="der: the .cer many device pages want")
    ca.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    ca.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR))
    ca.set_defaults(func=cmd_ca)

    scenarios = sub.add_parser("scenarios", help="list, show or validate the catalog")
    scenarios.add_argument("action", choices=["list", "show", "validate"])
    scenarios.add_argument("id", nargs="?", help="show: the scenario's id (submission/tls-1.2-or-later)")
    scenarios.add_argument("--scenarios", metavar="DIR", help="your own scenario directory, added to the bundled")
    scenarios.add_argument("--tenant", help="check tenant overrides against this tenant file")
    scenarios.set_defaults(func=cmd_scenarios)
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
