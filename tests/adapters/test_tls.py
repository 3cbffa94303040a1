"""TLS at the submission endpoint: versions, the 4.7.66 refusal, the legacy endpoint, the 465 trap."""

from __future__ import annotations

import socket
import ssl
import warnings

import pytest

from fakes.tls import read_hello
from tests.conftest import overrides
from tests.helpers import SUFFIX, Device, client_context


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_tls_1_2_and_1_3_are_served(edge, version):
    mark = edge.records.mark()
    with Device(edge) as device:
        device.secure(version)
        assert device.sock.version() == version
        device.login("scanner@contoso.com", "Scan-2026!")
    events = edge.records.window(mark)
    assert [e.version for e in events if e.kind == "tls"] == [version]
    hello = read_hello(next(e for e in events if e.kind == "client_hello"))
    assert hello.versions == (version,)  # a pinned client offers only that version


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1.1"])
def test_tls_1_0_and_1_1_complete_the_handshake_then_get_4_7_66(edge, version):
    mark = edge.records.mark()
    with Device(edge) as device:
        device.ehlo()
        device.starttls(context=client_context(edge, version))
        assert device.sock.version() == version  # the handshake completed, as the real one does
        code, text = device.ehlo()
        assert code == 421
        assert text.decode().startswith(
            "4.7.66 TLS 1.0 and 1.1 are not supported. Please upgrade/update your client to support "
            "TLS 1.2. Visit https://aka.ms/smtp_auth_tls. [")
        assert SUFFIX.search("421 " + text.decode())
    events = edge.records.window(mark)
    assert any(e.kind == "legacy_tls" and e.value == version for e in events)
    hello = read_hello(next(e for e in events if e.kind == "client_hello"))
    assert hello.highest_version == version


def test_legacy_endpoint_serves_tls_1_0_when_the_tenant_allows_it(edge):
    overrides(edge, org={"allow_legacy_tls_clients": True})
    with Device(edge, "legacy") as device:
        device.ehlo()
        device.starttls(context=client_context(edge, "TLSv1"))
        assert device.ehlo()[0] == 250
        device.login("scanner@contoso.com", "Scan-2026!")


def test_legacy_endpoint_refuses_tls_1_0_without_the_opt_in(edge):
    with Device(edge, "legacy") as device:
        device.ehlo()
        device.starttls(context=client_context(edge, "TLSv1"))
        assert device.ehlo()[0] == 421


def test_the_default_endpoint_refuses_tls_1_0_even_with_the_opt_in(edge):
    overrides(edge, org={"allow_legacy_tls_clients": True})
    with Device(edge) as device:
        device.ehlo()
        device.starttls(context=client_context(edge, "TLSv1.1"))
        assert device.ehlo()[0] == 421


def test_a_client_that_rejects_the_certificate_leaves_a_failed_handshake_on_record(edge):
    mark = edge.records.mark()
    with Device(edge) as device:
        device.ehlo()
        untrusting = ssl.create_default_context()  # does not know the lab CA
        with pytest.raises(ssl.SSLCertVerificationError):
            device.starttls(context=untrusting)
    assert edge.records.wait_for(lambda ev: any(e.kind == "tls_failed" for e in ev), 5, since=mark)
    events = edge.records.window(mark)
    assert any(e.kind == "client_hello" and read_hello(e).sni == "smtp.office365.com" for e in events)
    assert not any(e.kind == "auth" for e in events)


def test_implicit_tls_on_465_is_recorded_and_never_served(edge):
    host, port = edge.addresses["implicit-tls"]
    mark = edge.records.mark()
    ctx = client_context(edge)
    with (
        socket.create_connection((host, port), timeout=5) as raw,
        pytest.raises((ssl.SSLError, ConnectionError, OSError)),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", ResourceWarning)
        ctx.wrap_socket(raw, server_hostname="smtp.office365.com").do_handshake()
    assert edge.records.wait_for(lambda ev: any(e.kind == "disconnect" for e in ev), 5, since=mark)
    events = edge.records.window(mark)
    assert events[0].endpoint == "implicit-tls"
    hello = read_hello(next(e for e in events if e.kind == "client_hello"))
    assert hello.implicit_tls is True and hello.sni == "smtp.office365.com"
    assert "TLSv1.3" in hello.versions


@pytest.mark.parametrize("endpoint", ["submission", "mx"])
def test_a_client_close_notify_ends_the_session_with_the_edges_own(edge, endpoint):
    """PHP sends close_notify after its name check: the edge answers with its own and closes
    (RFC 8446 6.1), at once, not after the idle timer."""
    mark = edge.records.mark()
    device = Device(edge, endpoint)
    try:
        device.ehlo()
        device.starttls(context=client_context(edge))
        device.ehlo()
        device.sock.settimeout(5)  # far below the edge's idle timer: an answer, or this fails
        plain = device.sock.unwrap()  # sends close_notify and waits for the edge's
        assert plain.recv(1) == b""  # then the edge closed the connection
    finally:
        device.close()
    assert edge.records.wait_for(lambda events: any(e.kind == "disconnect" for e in events), 5, since=mark)


def test_the_lab_writes_its_tls_keys_when_asked_and_only_its_owner_reads_them(tmp_path):
    """exoedge serve --keylog: every handshake's secrets in NSS key log format (what Wireshark
    reads to decrypt a lab capture), in a file of mode 0600; the records never hold them."""
    import stat

    from fakes.edge import Edge, EdgeThread

    keys = tmp_path / "keys" / "tls.log"
    with EdgeThread(Edge(state_dir=tmp_path / "state", keylog=keys)) as lab:
        with Device(lab) as device:
            device.secure("TLSv1.3")
        with Device(lab) as device:
            device.secure("TLSv1.2")
        lab.records.flush()
        records = lab.records.path.read_text()
    lines = keys.read_text().splitlines()
    labels = {line.split(" ", 1)[0] for line in lines}
    assert {"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_TRAFFIC_SECRET_0", "CLIENT_RANDOM"} <= labels, labels
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    secret = lines[0].rsplit(" ", 1)[1]
    assert secret not in records


def test_the_edge_serves_tls_without_taking_client_hellos_apart(tmp_path):
    """The edge keeps each ClientHello as sent and never dissects it while it serves (scapy's TLS
    layers were a third of a printer's connection and 29 MiB); whoever reads the record does."""
    import subprocess
    import sys
    from pathlib import Path

    script = f"""
import sys
from fakes.edge import Edge, EdgeThread
from fakes.tls import read_hello
from tests.helpers import Device
with EdgeThread(Edge(state_dir={str(tmp_path / "state")!r})) as edge:
    with Device(edge) as device:
        device.secure()
        device.login("scanner@contoso.com", "Scan-2026!")
    served = sorted(name for name in sys.modules if name.startswith("scapy"))
    (hello,) = [e for e in edge.records.events() if e.kind == "client_hello"]
    print(served, hello.versions, read_hello(hello).sni)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2], check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[] () smtp.office365.com"


def test_the_identity_endpoint_is_made_at_its_first_connection_and_answers_every_one(tmp_path):
    """An edge no device signs in to never loads aiohttp or jinja2 (14 MiB of an idle edge); the
    first sign-ins, eight at once, are each answered once the endpoint is made."""
    import subprocess
    import sys
    from pathlib import Path

    script = f"""
import concurrent.futures, http.client, json, socket, ssl, sys
from fakes.edge import Edge, EdgeThread
from tests.helpers import Device
with EdgeThread(Edge(state_dir={str(tmp_path / "state")!r})) as edge:
    with Device(edge) as device:
        device.secure()
        device.login("scanner@contoso.com", "Scan-2026!")
    before = sorted(m for m in ("aiohttp", "jinja2") if m in sys.modules)
    context = ssl.create_default_context(cafile=str(edge.ca.cert_path))
    host, port = edge.addresses["identity"]

    def ask(_):
        raw = socket.create_connection((host, port), timeout=30)
        tls = context.wrap_socket(raw, server_hostname="login.microsoftonline.com")
        connection = http.client.HTTPSConnection("login.microsoftonline.com", timeout=30)
        connection.sock = tls
        connection.request("GET", "/common/v2.0/.well-known/openid-configuration")
        answer = connection.getresponse()
        return answer.status, "token_endpoint" in json.loads(answer.read())

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(8)))
    after = sorted(m for m in ("aiohttp", "jinja2") if m in sys.modules)
    print(before, after, sorted(set(answers)), len(answers))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2], check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[] ['aiohttp', 'jinja2'] [(200, True)] 8"
