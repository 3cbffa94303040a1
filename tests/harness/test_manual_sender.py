"""The manual sender: a person at a device is told what to send, and the edge waits for the device."""

from __future__ import annotations

import threading
from pathlib import Path

from harness.reference import PROFILES, ReferenceSender
from harness.runner import Runner, Verdict
from harness.scenario import load_catalog
from harness.senders import ManualSender, Order
from tests.helpers import Device, message

CATALOG = {s.id: s for s in load_catalog(Path(__file__).resolve().parents[2] / "scenarios")}


def scanner_sends(edge, source: str) -> None:  # noqa: ANN001 - the edge
    """The device, once its person pressed "scan to email": in a thread, as a device does."""

    def device() -> None:
        with Device(edge, source=source) as d:
            d.secure()
            d.login("scanner@contoso.com", "Scan-2026!")
            body = message("scanner@contoso.com", "alice@contoso.com")
            d.sendmail("scanner@contoso.com", ["alice@contoso.com"], body)

    threading.Thread(target=device, daemon=True).start()


def test_the_person_is_told_what_to_send_and_the_device_is_judged(exo_edge_clean):
    edge = exo_edge_clean
    prompts: list[str] = []

    def person_presses_scan(text: str) -> None:
        prompts.append(text)
        scanner_sends(edge, "127.0.0.70")

    runner = Runner(edge, ManualSender(say=person_presses_scan), manual_idle=0.5)
    result = runner.run(CATALOG["submission/starttls-before-auth"])
    assert result.verdict == Verdict.PASS, result.reason
    assert "from scanner@contoso.com to alice@contoso.com through smtp.office365.com" in prompts[0]


def test_a_device_that_never_sends_is_an_error_after_the_timeout(exo_edge_clean):
    scenario = CATALOG["submission/starttls-before-auth"].model_copy(update={"timeout": 0.5})
    result = Runner(exo_edge_clean, ManualSender(say=lambda text: None), manual_idle=0.2).run(scenario)
    assert result.verdict == Verdict.ERROR and "never connected" in result.reason


def test_the_order_carries_the_environment_of_the_contract():
    order = Order(host="smtp.office365.com", addr="127.0.0.1", port=2587, ports={587: 2587, 465: 2465},
                  dns="127.0.0.1:2053", sender="a@contoso.com", to=("b@contoso.com", "c@example.org"),
                  subject="s", user="a@contoso.com", password="p", token=None, cafile="/ca.pem")
    env = order.env()
    assert env["EXO_TO"] == "b@contoso.com,c@example.org" and env["EXO_PORTS"] == "465=2465,587=2587"
    assert env["EXO_TOKEN"] == "" and env["EXO_HOST"] == "smtp.office365.com"


def test_for_an_oauth_case_the_person_is_told_how_to_sign_the_device_in(exo_edge_clean):
    prompts: list[str] = []

    class DeviceInTheLab(ManualSender):
        def send(self, order: Order):  # noqa: ANN201 - the person reads, then the device does it
            result = super().send(order)
            threading.Thread(target=ReferenceSender(PROFILES["oauth-device"]).send, args=(order,), daemon=True).start()
            return result

    result = Runner(exo_edge_clean, DeviceInTheLab(say=prompts.append), manual_idle=0.5).run(
        CATALOG["oauth/device-code-then-xoauth2"])
    assert result.verdict == Verdict.PASS, result.reason
    said = prompts[0]
    assert "OAuth app (client) id to 00000000-0000-0000-0000-00000000d3c0" in said
    assert "authority to https://login.microsoftonline.com/contoso.com" in said
    assert "open https://www.microsoft.com/link" in said and "sign in as scanner@contoso.com" in said
    assert "Scan-2026!" not in said


def test_a_paced_run_waits_for_the_person_skips_and_retries_as_told(exo_edge_clean):
    import io

    from harness.pacing import Pacing, device_settings

    edge = exo_edge_clean
    said: list[str] = []

    def press_scan(text: str) -> None:
        scanner_sends(edge, "127.0.0.71")

    # ready; skip the first case; start the second, retry it, start it again, go on
    pacing = Pacing(io.StringIO("\ns\n\nr\n\n\n"), say=said.append)
    edge.records.watch(pacing.sessions)
    try:
        runner = Runner(edge, ManualSender(say=press_scan), manual_idle=0.5, manual_wait=20)
        pacing.ready(device_settings(edge), 20)
        first = pacing.run(runner, CATALOG["submission/port-587-not-465"])
        second = pacing.run(runner, CATALOG["submission/starttls-before-auth"])
    finally:
        edge.records.unwatch(pacing.sessions)
    assert first.verdict == Verdict.SKIP and first.reason == "skipped by the person at the device"
    assert second.verdict == Verdict.PASS, second.reason
    text = "\n".join(said)
    assert "Set on the device:" in text and "server smtp.office365.com, port" in text
    assert text.count("Enter: start this case") == 3  # the first, the second, the second again
    assert text.count("AUTH LOGIN scanner@contoso.com: success") == 2  # each try's connection, as it closed


def test_without_a_terminal_the_run_is_unattended_and_says_so(exo_edge_clean):
    from harness.pacing import Pacing

    said: list[str] = []
    pacing = Pacing(None, say=said.append)
    pacing.ready("DNS server: 127.0.0.1", 180)
    assert said[-1] == "Unattended (no terminal): each case waits up to 180 s for the device, nothing is asked."


def test_a_stopped_reference_device_stops_where_it_waits(exo_edge_clean):
    """The reference device paces itself (between messages, between polls, in its backoff) by
    waiting on its stop: stopped while it waits for its next message, it sends nothing more."""
    import dataclasses

    edge = exo_edge_clean
    sender = ReferenceSender(PROFILES["submission"])
    runner = Runner(edge, sender)
    order = dataclasses.replace(runner.order(CATALOG["submission/starttls-before-auth"], edge.tenant),
                                count=2, interval=600.0)
    mark = edge.records.mark()
    results = []
    device = threading.Thread(target=lambda: results.append(sender.send(order)), daemon=True)
    device.start()
    assert edge.records.wait_for(lambda events: any(e.kind == "stored" for e in events), 30, since=mark)
    sender.stop()
    device.join(30)
    assert not device.is_alive() and results, "the device went on waiting after it was stopped"
    assert results[0].exit_code == 1 and "stopped before its next message" in results[0].stdout
    assert len([e for e in edge.records.events(mark) if e.kind == "stored"]) == 1
