"""The state directory: one CA and one token key whoever starts first, private from the start."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from fakes.edge import Edge

ROOT = Path(__file__).resolve().parents[2]


def test_processes_starting_together_on_a_fresh_directory_agree_on_one_ca_and_key(tmp_path):
    state = tmp_path / "state"
    code = ("import sys; from pathlib import Path; from fakes.tls import LabCA; ca = LabCA.open(Path(sys.argv[1])); "
            "print(ca.cert_path.read_bytes().hex()[-64:], ca.issuer_key.hex()[-64:])")
    runs = [subprocess.Popen([sys.executable, "-c", code, str(state)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
            for _ in range(6)]
    seen = {run.communicate(timeout=60)[0] for run in runs}
    assert len(seen) == 1  # every process read the same CA and issuer key
    on_disk = (state / "ca.pem").read_bytes().hex()[-64:]
    assert seen.pop().split()[0] == on_disk


def test_keys_records_and_mail_are_the_owners_only(tmp_path):
    edge = Edge(state_dir=tmp_path / "state")
    try:
        mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)  # noqa: E731
        assert mode(tmp_path / "state") == 0o700
        assert mode(tmp_path / "state" / "ca.key") == 0o600
        assert mode(tmp_path / "state" / "token-issuer.key") == 0o600
        assert mode(edge.records.path) == 0o600
        assert mode(edge.store.directory) == 0o700
        cert, key = edge.ca.client_certificate("relay.contoso.com", tmp_path / "certs")
        assert mode(key) == 0o600
        assert not list((tmp_path / "state").glob(".*.key.*"))  # no temporary file left behind
    finally:
        edge.close()
