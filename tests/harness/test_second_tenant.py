"""The harness knows no tenant by heart: the whole catalog on fabrikam (another domain, other
mailboxes, passwords, connectors and source addresses, no lab: block), over real sockets."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakes.edge import Edge, EdgeThread
from fakes.exo.tenant import Tenant
from harness.reference import PROFILES, ReferenceSender
from harness.runner import Runner, Verdict
from harness.scenario import load_catalog
from harness.senders import CommandSender

HERE = Path(__file__).resolve().parents[1]
FABRIKAM = Tenant.load(HERE / "data" / "fabrikam.yaml")
CATALOG = load_catalog(HERE.parent / "scenarios", FABRIKAM)


@pytest.fixture(scope="module")
def fabrikam_edge(tmp_path_factory) -> Iterator[Edge]:
    with EdgeThread(Edge(FABRIKAM, state_dir=tmp_path_factory.mktemp("fabrikam"))) as edge:
        yield edge


@pytest.mark.parametrize("profile", sorted(name for name, p in PROFILES.items() if p.conformant))
def test_conformant_reference_senders_pass_every_case_on_another_tenant(fabrikam_edge, profile):
    runner = Runner(fabrikam_edge, ReferenceSender(PROFILES[profile]), tenant=FABRIKAM)
    results = {case.id: runner.run(case) for case in CATALOG}
    wrong = {cid: f"{r.verdict}: {r.reason}" for cid, r in results.items() if r.verdict not in (Verdict.PASS,
                                                                                                 Verdict.SKIP)}
    assert not wrong
    # skipped only for being another option's case, never for a part fabrikam could not fill
    assert not [r.reason for r in results.values() if r.verdict == Verdict.SKIP and "not applicable" in r.reason]
    passed = [cid for cid, r in results.items() if r.verdict == Verdict.PASS]
    option = PROFILES[profile].option
    sender = ReferenceSender(PROFILES[profile])
    assert len(passed) == len([c for c in CATALOG if c.applies_to(option, sender.connector, sender.sign_in)])


def test_a_command_sender_is_handed_the_tenants_mailbox_and_password(fabrikam_edge, tmp_path):
    dump = tmp_path / "env.txt"
    sender = CommandSender(f'{sys.executable} -c "import os; open(\\"{dump}\\", \\"w\\").write('
                           f'os.environ[\\"EXO_USER\\"] + \\" \\" + os.environ[\\"EXO_TO\\"])"')
    (case,) = [c for c in CATALOG if c.id == "submission/port-587-not-465"]
    Runner(fabrikam_edge, sender, tenant=FABRIKAM).run(case)
    assert dump.read_text() == "mfp-3f@fabrikam.net empfang@fabrikam.net"


def test_a_case_the_tenant_cannot_host_is_skipped_with_the_reason(fabrikam_edge):
    lonely = FABRIKAM.with_overrides({"mailboxes": [{"address": "mfp-3f@fabrikam.net", "password": "x"}]})
    (case,) = [c for c in CATALOG if c.id == "submission/send-as-granted"]
    result = Runner(fabrikam_edge, ReferenceSender(PROFILES["submission"]), tenant=lonely).run(case)
    assert result.verdict == Verdict.SKIP
    assert result.reason == ("not applicable: the tenant has no address the submitter may send as "
                             "(lab.send_as, or the submitter's send_as)")
