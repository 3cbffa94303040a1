"""The lab's certificate chain has Microsoft's shape: root -> intermediate -> leaf, RSA 2048 and
SHA-256, a root that ends before 2038, leaves of about a year, the intermediate in the handshake."""

from __future__ import annotations

import datetime
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from fakes.tls import LabCA
from tests.helpers import RawClient, need

NOW = datetime.datetime.now(datetime.UTC)


def chain(path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> LabCA:
    return LabCA.open(tmp_path_factory.mktemp("pki"))


def test_every_certificate_is_rsa_2048_and_sha_256_with_the_real_validity(lab):
    root = x509.load_pem_x509_certificate(lab.cert_path.read_bytes())
    leaf, intermediate = chain(lab.server_leaf("submission")[0])
    for cert in (root, intermediate, leaf):
        key = cert.public_key()
        assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048
        assert cert.signature_hash_algorithm.name == "sha256"
    assert root.not_valid_after_utc.year <= 2037  # a 32-bit time_t device can hold it
    assert intermediate.issuer == root.subject and leaf.issuer == intermediate.subject
    assert intermediate.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    assert datetime.timedelta(days=360) < leaf.not_valid_after_utc - NOW < datetime.timedelta(days=370)


@pytest.mark.parametrize(("kind", "common_name", "names"), [
    ("submission", "outlook.com", ["smtp.office365.com", "smtp-legacy.office365.com", "outlook.com"]),
    ("mx", "mail.protection.outlook.com", ["*.mail.protection.outlook.com", "mail.protection.outlook.com"]),
])
def test_the_leaves_name_what_exchange_onlines_do(lab, kind, common_name, names):
    leaf = chain(lab.server_leaf(kind)[0])[0]
    assert leaf.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value == common_name
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == names


@pytest.mark.parametrize("kind", ["submission", "mx", "identity", "client"])
def test_leaves_have_a_public_cas_profile_no_critical_names_no_code_signing(lab, kind, tmp_path):
    """As Exchange Online's own leaf: SAN and EKU not critical, serverAuth and clientAuth only.
    Mono's chain engine refuses a critical EKU (InvalidExtension)."""
    path = lab.client_certificate("relay.contoso.com", tmp_path)[0] if kind == "client" else lab.server_leaf(kind)[0]
    leaf = chain(path)[0]
    extensions = leaf.extensions
    usage = extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert not usage.critical
    assert list(usage.value) == [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not extensions.get_extension_for_class(x509.SubjectAlternativeName).critical
    basic = extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca is False
    key_usage = extensions.get_extension_for_class(x509.KeyUsage).value
    assert key_usage.digital_signature and key_usage.key_encipherment and not key_usage.key_cert_sign


@pytest.mark.parametrize(("kind", "hostname"), [("submission", "smtp.office365.com"),
                                                ("mx", "contoso-com.mail.protection.outlook.com")])
def test_gnutls_verifies_the_chain_for_the_host(lab, kind, hostname, tmp_path):
    """A second verifier beside OpenSSL's: GnuTLS's certtool, with the purpose TLS servers need."""
    certtool = need("certtool", "gnutls-bin")
    done = subprocess.run([certtool, "--verify", f"--load-ca-certificate={lab.cert_path}",
                           f"--infile={lab.server_leaf(kind)[0]}", f"--verify-hostname={hostname}",
                           "--verify-purpose=1.3.6.1.5.5.7.3.1"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "Chain verification output: Verified" in done.stdout, done.stdout + done.stderr


@pytest.mark.parametrize(("kind", "hostname"), [("submission", "smtp.office365.com"),
                                                ("mx", "contoso-com.mail.protection.outlook.com")])
def test_openssl_verifies_the_chain_against_the_root_alone(lab, kind, hostname, tmp_path):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    certs = lab.server_leaf(kind)[0].read_text().split("-----END CERTIFICATE-----\n")
    (tmp_path / "leaf.pem").write_text(certs[0] + "-----END CERTIFICATE-----\n")
    (tmp_path / "intermediate.pem").write_text(certs[1] + "-----END CERTIFICATE-----\n")
    done = subprocess.run([openssl, "verify", "-CAfile", str(lab.cert_path), "-untrusted",
                           str(tmp_path / "intermediate.pem"), "-verify_hostname", hostname,
                           str(tmp_path / "leaf.pem")], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and ": OK" in done.stdout, done.stdout + done.stderr
    alone = subprocess.run([openssl, "verify", "-CAfile", str(lab.cert_path), str(tmp_path / "leaf.pem")],
                           capture_output=True, text=True, check=False)
    assert alone.returncode != 0  # without the intermediate there is no path: the server must send it


@pytest.mark.parametrize("endpoint", ["submission", "mx"])
def test_an_edge_sends_the_intermediate_and_pythons_ssl_trusts_the_root_alone(edge, endpoint):
    # the client trusts the root and nothing else: the handshake verifies only if the edge sent
    # the intermediate, for the name the device was told (smtp.office365.com, the tenant MX)
    source = "127.0.0.10" if endpoint == "mx" else "127.0.0.1"
    with RawClient(edge, endpoint, source=source).starttls() as client:
        assert client.sock.version() in ("TLSv1.2", "TLSv1.3")
        assert client.sock.server_hostname == edge.hostname(endpoint)


def test_leaves_close_to_expiry_are_renewed_and_the_root_is_kept(tmp_path):
    first = LabCA.open(tmp_path / "state")
    root = first.cert_path.read_bytes()
    # put an old leaf in place: issued 360 days ago, 5 days left
    started = NOW - datetime.timedelta(days=360)
    old_cert, old_key = first.issue("outlook.com", "smtp.office365.com", not_before=started, tag="old")
    shutil.copyfile(old_cert, tmp_path / "state" / "submission.pem")
    shutil.copyfile(old_key, tmp_path / "state" / "submission.key")
    again = LabCA.open(tmp_path / "state")
    leaf = chain(again.server_leaf("submission")[0])[0]
    assert leaf.not_valid_after_utc - NOW > datetime.timedelta(days=300)
    assert again.cert_path.read_bytes() == root
