"""The lab's small commands: the CA exported as a device's web page wants it, and the catalog
listed, shown and validated."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cryptography import x509

ROOT = Path(__file__).resolve().parents[2]


def exoedge(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, capture_output=True, timeout=120)


def test_the_ca_exports_as_pem_and_as_der_the_same_certificate(tmp_path):
    state = str(tmp_path / "state")
    pem = exoedge("ca", "export", "--format", "pem", "--state-dir", state)
    der = exoedge("ca", "export", "--format", "der", "--state-dir", state, "--out", str(tmp_path / "lab.cer"))
    assert pem.returncode == der.returncode == 0
    from_pem = x509.load_pem_x509_certificate(pem.stdout)
    from_der = x509.load_der_x509_certificate((tmp_path / "lab.cer").read_bytes())
    assert from_pem == from_der and from_der.subject.rfc4514_string().startswith("CN=exo-edge lab Root CA")


def test_scenarios_list_show_and_validate(tmp_path):
    listed = exoedge("scenarios", "list").stdout.decode().splitlines()
    assert len(listed) == len(list((ROOT / "scenarios").rglob("*.yaml")))
    assert any(line.startswith("oauth/polling-honours-interval ") for line in listed)
    shown = exoedge("scenarios", "show", "submission/tls-1.2-or-later").stdout.decode()
    assert shown == (ROOT / "scenarios" / "submission" / "tls-1.2-or-later.yaml").read_text()
    mine = tmp_path / "mine" / "submission"
    mine.mkdir(parents=True)
    (mine / "bad.yaml").write_text("title: x\noption: submission\nreference: []\nexpect: []\nadvice: a\n")
    refused = exoedge("scenarios", "validate", "--scenarios", str(tmp_path / "mine"))
    assert refused.returncode == 2 and b"bad.yaml:3: reference" in refused.stderr
    missing = exoedge("scenarios", "show", "submission/nope")
    assert missing.returncode == 2 and b"no scenario 'submission/nope'" in missing.stderr
