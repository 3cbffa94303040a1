"""A closed connection is freed when it closes: no reference cycle keeps a TLS connection, its
session or its buffers alive until the cyclic collector happens to run (a lab left running for
days would otherwise grow between collections)."""

from __future__ import annotations

import gc
import weakref

from fakes import smtp
from fakes.edge import Edge, EdgeThread
from tests.helpers import Device


def test_closed_tls_connections_are_freed_without_the_cyclic_collector(tmp_path, monkeypatch):
    made: list[weakref.ref] = []
    original = smtp.SmtpConnection.__init__

    def tracked(self, listener):  # noqa: ANN001, ANN202 - the protocol's own signature
        original(self, listener)
        made.append(weakref.ref(self))

    monkeypatch.setattr(smtp.SmtpConnection, "__init__", tracked)
    runner = EdgeThread(Edge(state_dir=tmp_path))
    edge = runner.start()
    try:
        mark = edge.records.mark()
        gc.collect()
        gc.disable()
        for _ in range(20):
            with Device(edge) as device:
                device.starttls()
                device.ehlo()
                device.login("scanner@contoso.com", "Scan-2026!")
                device.sendmail("scanner@contoso.com", ["alice@contoso.com"], b"Subject: x\r\n\r\nhello\r\n")
        assert edge.records.wait_for(
            lambda events: sum(e.kind == "disconnect" for e in events) >= 20, 10, since=mark)
        runner.edge.on_loop(lambda: None)  # one more turn of the loop: the last close's callbacks have run
        alive = [ref() for ref in made if ref() is not None]
        assert len(made) == 20 and not alive, f"{len(alive)} closed connections still alive (a reference cycle)"
    finally:
        gc.enable()
        runner.stop()
