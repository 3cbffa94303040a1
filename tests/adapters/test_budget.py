"""One connection budget for every listener, and a time limit for every session: idle
connections to the identity endpoint, DNS over TCP or port 465 count as SMTP's do, so filling
them cannot lock SMTP out past the budget (SMTP's one too many hears 421 4.3.2, the others are
closed at once); a session ends after its overall time however busy it is; at the descriptor
limit the edge says so in a line a minute, not a line an accept."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fakes.edge import Edge, EdgeThread
from tests.helpers import RawClient

ROOT = Path(__file__).resolve().parents[2]


def counted(edge, total: int) -> threading.Event:  # noqa: ANN001
    """Set once the edge counts ``total`` open connections (told by the edge as it counts them
    in and out, on its loop): what the test waits for, never a poll."""
    reached = threading.Event()

    def check() -> None:
        if edge.state.open_connections.total() == total:
            reached.set()

    def watch() -> None:
        edge.state.on_count = check
        check()  # it may hold already

    edge.on_loop(watch)
    return reached


@pytest.fixture
def small(tmp_path):
    thread = EdgeThread(Edge(state_dir=tmp_path / "lab", session_limit=1.0))
    edge = thread.start()
    edge.on_loop(lambda: setattr(edge.state, "max_connections", 6))
    try:
        yield edge
    finally:
        thread.stop()


def open_count(edge) -> int:  # noqa: ANN001
    return edge.on_loop(lambda: edge.state.open_connections.total())


def test_idle_connections_to_every_other_listener_count_in_smtps_budget(small):
    edge = small
    six = counted(edge, 6)
    idle = [socket.create_connection(edge.addresses[name], timeout=10)
            for name in ("identity", "identity", "dns", "implicit-tls", "identity", "dns")]
    try:
        assert six.wait(10), f"six idle connections never counted ({open_count(edge)})"
        with RawClient(edge) as refused:
            assert refused.banner.startswith("421 4.3.2 ")
        extra = socket.create_connection(edge.addresses["identity"], timeout=10)
        assert extra.recv(1) == b""  # over the budget: closed at once, no handshake begun
        extra.close()
        none = counted(edge, 0)
    finally:
        for sock in idle:
            sock.close()
    assert none.wait(10), f"the closed connections never freed ({open_count(edge)})"
    with RawClient(edge) as served:
        assert served.banner.startswith("220 ")


def test_a_busy_session_still_ends_at_its_overall_time_limit(small):
    edge = small
    with RawClient(edge) as client:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # a NOOP as soon as the last is answered: never idle
            client.send(b"NOOP\r\n")
            line = client.replies(1)[0]
            if line.startswith("421"):
                break
        assert line.startswith("421 4.4.1 Connection timed out. Total session duration: 00:00:0"), line


def test_at_the_descriptor_limit_the_edge_keeps_answering_and_logs_a_line_not_a_flood(tmp_path):
    """A serve with 128 descriptors: 200 idle identity connections from ten sources are turned
    away at the budget; SMTP answers 421 4.3.2 meanwhile, DNS answers, and stderr stays short."""
    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))

    serve = subprocess.Popen([sys.executable, "-m", "harness.cli", "serve", "--state-dir", str(tmp_path / "lab"),
                              "--host", "127.0.0.1"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, preexec_fn=limited, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    held: list[socket.socket] = []
    try:
        described = json.loads(serve.stdout.readline())
        addresses = {name: (described[name].rsplit(":", 1)[0], int(described[name].rsplit(":", 1)[1]))
                     for name in ("submission", "identity", "dns")}
        for n in range(200):
            try:
                held.append(socket.create_connection(addresses["identity"], timeout=5,
                                                     source_address=(f"127.0.0.{100 + n % 10}", 0)))
            except OSError:
                break
        refused = socket.create_connection(addresses["submission"], timeout=10)
        assert refused.recv(200).startswith(b"421 4.3.2 "), "SMTP did not answer with the budget full"
        refused.close()
        from dnslib import DNSRecord

        reply = DNSRecord.parse(DNSRecord.question("smtp.office365.com", "A").send(*addresses["dns"], timeout=5))
        assert reply.rr, "DNS stopped answering"
    finally:
        for sock in held:
            sock.close()
        serve.terminate()
        _out, err = serve.communicate(timeout=30)
    assert len(err.splitlines()) < 40, err[-2000:]
