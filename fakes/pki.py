"""The lab's certificates, in the shape of Microsoft's: root -> intermediate -> leaf.

Exchange Online presents a leaf issued by an intermediate under a public root; embedded TLS
stacks (32-bit clocks, strict path building) judge a chain by that shape. So the lab's does:
RSA 2048 and SHA-256 throughout; a root valid for ten years and never past 2037 (a device
with a 32-bit ``time_t`` cannot represent 2038); an intermediate, sent in every handshake; leaves
valid for about a year, renewed in the state directory a month before they expire:

- submission: ``CN=outlook.com``, SANs smtp.office365.com, smtp-legacy.office365.com, outlook.com
- mx: ``CN=mail.protection.outlook.com``, SANs *.mail.protection.outlook.com and the bare name

All of it is made here with ``cryptography``: trustme cannot set a root's validity or names, and
its leaves are not shaped like a public CA's (critical SAN and EKU, Code Signing). The root is
the one file a device imports.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fakes.exo.errors import InternalError
from fakes.exo.names import IDENTITY_HOST, IDENTITY_NAMES, LEGACY_HOST, MX_SUFFIX, SUBMISSION_HOST

ROOT_YEARS = 10
LAST_ROOT_DAY = datetime.datetime(2037, 12, 31, tzinfo=datetime.UTC)
INTERMEDIATE_YEARS = 5
LEAF_DAYS = 365
RENEW_BEFORE = datetime.timedelta(days=30)

SUBMISSION_LEAF = ("outlook.com", (SUBMISSION_HOST, LEGACY_HOST, "outlook.com"))
MX_LEAF = (MX_SUFFIX[1:], ("*" + MX_SUFFIX, MX_SUFFIX[1:]))
IDENTITY_LEAF = (IDENTITY_HOST, IDENTITY_NAMES)
SERVER_LEAVES = {"submission": SUBMISSION_LEAF, "mx": MX_LEAF, "identity": IDENTITY_LEAF}


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def _name(common_name: str, organization: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca_certificate(subject: x509.Name, key: rsa.RSAPrivateKey, *, issuer: x509.Certificate | None,
                    issuer_key: rsa.RSAPrivateKey, not_after: datetime.datetime,
                    path_length: int | None) -> x509.Certificate:
    now = _now() - datetime.timedelta(days=1)  # a device whose clock is a little behind still agrees
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                                        critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@dataclass(frozen=True)
class Authority:
    """A root and the intermediate that issues every leaf, as PEM bytes."""

    root_pem: bytes
    root_key_pem: bytes
    intermediate_pem: bytes
    intermediate_key_pem: bytes

    @classmethod
    def create(cls, organization: str = "exo-edge lab") -> Authority:
        root_key = _new_key()
        root_name = _name(f"{organization} Root CA", organization)
        not_after = min(_now() + datetime.timedelta(days=365 * ROOT_YEARS), LAST_ROOT_DAY)
        root = _ca_certificate(root_name, root_key, issuer=None, issuer_key=root_key, not_after=not_after,
                               path_length=1)
        return cls(_pem(root), _key_pem(root_key), *cls._intermediate(root, root_key, organization))

    @staticmethod
    def _intermediate(root: x509.Certificate, root_key: rsa.RSAPrivateKey,
                      organization: str) -> tuple[bytes, bytes]:
        key = _new_key()
        not_after = min(_now() + datetime.timedelta(days=365 * INTERMEDIATE_YEARS), root.not_valid_after_utc)
        cert = _ca_certificate(_name(f"{organization} TLS CA 01", organization), key, issuer=root,
                               issuer_key=root_key, not_after=not_after, path_length=0)
        return _pem(cert), _key_pem(key)

    def with_new_intermediate(self) -> Authority:
        """The same root (devices keep trusting it) with a fresh intermediate."""
        root = x509.load_pem_x509_certificate(self.root_pem)
        root_key = serialization.load_pem_private_key(self.root_key_pem, password=None)
        if not isinstance(root_key, rsa.RSAPrivateKey):
            raise InternalError("the lab root key must be RSA")
        organization = root.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        org = str(organization[0].value) if organization else "exo-edge lab"
        return Authority(self.root_pem, self.root_key_pem, *self._intermediate(root, root_key, org))

    def issue(self, common_name: str, *names: str, days: int = LEAF_DAYS,
              not_before: datetime.datetime | None = None) -> Leaf:
        """A leaf from the intermediate, with its chain, in the profile of a public CA's TLS leaf
        (Exchange Online's own): subjectAltName and extended key usage not critical, serverAuth
        and clientAuth only, digitalSignature and keyEncipherment. trustme's leaves mark both
        critical and add Code Signing, which strict chain engines (Mono's) refuse."""
        issuer = x509.load_pem_x509_certificate(self.intermediate_pem)
        issuer_key = serialization.load_pem_private_key(self.intermediate_key_pem, password=None)
        if not isinstance(issuer_key, rsa.RSAPrivateKey):
            raise InternalError("the lab intermediate key must be RSA")
        key = _new_key()
        start = not_before or _now() - datetime.timedelta(days=1)
        # X.509 allows a common name of 64 characters at most; a longer name lives in the SAN alone
        subject = [x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                   x509.NameAttribute(NameOID.ORGANIZATION_NAME, "exo-edge lab")]
        if len(common_name) <= 64:
            subject.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(subject))
            .issuer_name(issuer.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names or (common_name,)]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
            .sign(issuer_key, hashes.SHA256())
        )
        return Leaf(_pem(cert) + self.intermediate_pem, _key_pem(key))


def _general_name(name: str) -> x509.GeneralName:
    """A SAN entry: an IP address as one, a DNS name as its A-label (wildcards kept)."""
    with contextlib.suppress(ValueError):
        return x509.IPAddress(ipaddress.ip_address(name))
    return x509.DNSName(name if name.isascii() else name.encode("idna").decode("ascii"))


@dataclass(frozen=True)
class Leaf:
    chain_pem: bytes  # the leaf, then the intermediate: what a server (or client) sends
    key_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.chain_pem)

    def expires_within(self, margin: datetime.timedelta) -> bool:
        return self.certificate.not_valid_after_utc - margin <= _now()

    @property
    def shaped_like_a_public_cas(self) -> bool:
        """Not a leaf of an older lab (critical SAN or EKU, Code Signing): those are issued anew."""
        extensions = self.certificate.extensions
        with contextlib.suppress(x509.ExtensionNotFound):
            usage = extensions.get_extension_for_class(x509.ExtendedKeyUsage)
            names = extensions.get_extension_for_class(x509.SubjectAlternativeName)
            return not usage.critical and not names.critical \
                and ExtendedKeyUsageOID.CODE_SIGNING not in list(usage.value)
        return False
