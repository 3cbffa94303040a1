"""The state directory: one CA and one token key whoever starts first, private from the start."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fakes.edge import Edge
from fakes.exo.errors import UsageError

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


def test_an_existing_directory_keeps_its_mode_and_a_shared_one_gets_a_private_one_inside(tmp_path):
    """--state-dir . (or a shared 1777 directory) never has its mode changed; where the directory
    is someone else's, the state lives in a private exo-edge-<uid> inside it."""
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)  # noqa: E731
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o755)
    mine.chmod(0o755)
    edge = Edge(state_dir=mine)
    try:
        assert edge.state_dir == mine.resolve() and mode(mine) == 0o755
        assert mode(edge.records.path) == 0o600 and mode(mine / "ca.key") == 0o600
    finally:
        edge.close()
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    try:
        os.chown(shared, 65534, 65534)  # another user's, as /tmp is root's
    except PermissionError:
        pytest.skip("giving a directory to another user needs root")
    edge = Edge(state_dir=shared)
    try:
        assert edge.state_dir == shared.resolve() / f"exo-edge-{os.getuid()}"
        assert mode(edge.state_dir) == 0o700 and mode(shared) == 0o1777
    finally:
        edge.close()
    squatted = tmp_path / "squatted"
    squatted.mkdir()
    (squatted / f"exo-edge-{os.getuid()}").mkdir()
    os.chown(squatted / f"exo-edge-{os.getuid()}", 65534, 65534)  # made first by someone else
    os.chown(squatted, 65534, 65534)
    with pytest.raises(UsageError, match="is not a directory of yours"):
        Edge(state_dir=squatted)
