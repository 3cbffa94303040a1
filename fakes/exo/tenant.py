"""The tenant an edge serves: accepted domains, mailboxes, connectors, org switches and limits.

A tenant is frozen configuration, loaded from YAML and validated before anything binds.
``Tenant.load("tenant.yaml")`` or ``default_tenant()`` (contoso, bundled), then ``tenant.mailbox(...)``.
"""

from __future__ import annotations

import copy
import ipaddress
import random
import re
import uuid
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .documents import load_document, read_text, validate
from .errors import ConfigError
from .names import MX_SUFFIX, is_address

_TENANT = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_LABEL = re.compile(r"^[a-z0-9-]+$")


def _domain_problem(value: str) -> str | None:
    """Why ``value`` is not a DNS domain name as Microsoft 365 accepts one (RFC 1035 labels, at most
    253 octets, an internationalized name in its A-label form), or None."""
    if not value.isascii():
        try:
            hint = f": write it as its A-label {value.encode('idna').decode()!r}"
        except UnicodeError:
            hint = ""
        return f"is not an ASCII domain name{hint} (an internationalized name is given in its xn-- form)"
    if len(value) > 253:
        return f"is {len(value)} octets long; a domain name has at most 253"
    labels = value.lower().split(".")
    if len(labels) < 2:
        return "is not a domain name (a name and a top-level domain, with a dot between)"
    for label in labels:
        if not label:
            return "has an empty label (two dots, or a dot at an end)"
        if len(label) > 63:
            return f"has a label of {len(label)} octets ({label[:16]}...); a label has at most 63"
        if not _LABEL.match(label):
            return f"has a label with characters other than letters, digits and hyphens ({label!r})"
        if label.startswith("-") or label.endswith("-"):
            return f"has a label that begins or ends with a hyphen ({label!r})"
    if labels[-1].isdigit() or len(labels[-1]) < 2:
        return f"does not end in a top-level domain ({labels[-1]!r})"
    return None


def _address(value: str) -> str:
    if not value.isascii():
        raise ValueError("is not an ASCII address: tenants here take ASCII mailboxes only (no SMTPUTF8 "
                         "addresses); give an internationalized domain as its xn-- A-label")
    if not is_address(value):
        raise ValueError("is not an email address")
    local, _, domain = value.rpartition("@")
    if len(local) > 64:
        raise ValueError(f"has a local part of {len(local)} octets; at most 64")
    problem = _domain_problem(domain)
    if problem:
        raise ValueError(f"has a domain that {problem}")
    return value.lower()


def _domain(value: str) -> str:
    problem = _domain_problem(value)
    if problem:
        raise ValueError(problem)
    return value.lower()


def _certificate_domain(value: str) -> str:
    bare = value[2:] if value.startswith("*.") else value
    problem = _domain_problem(bare)
    if problem:
        raise ValueError(f"is not a domain name or a *.domain wildcard: it {problem}")
    return value.lower()


def _network(value: Any) -> Any:
    """An address range in CIDR form, refused in one line when it is not one (host bits set, a
    prefix too long)."""
    if not isinstance(value, str):
        return value
    try:
        return ipaddress.ip_network(value)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(f"is not an address range in CIDR form (address/prefix): {exc}") from None
        raise ValueError(f"has host bits set: the range is {loose}") from None


def _ip4_network(value: Any) -> Any:
    network = _network(value)
    if isinstance(network, ipaddress.IPv6Network):
        raise ValueError("is an IPv6 range where an ip4 range is due (SPF's ip4:)")
    return network


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError("is not an IP address") from None


def _certificate_pem(value: str) -> str:
    from cryptography import x509

    try:
        x509.load_pem_x509_certificate(value.encode())
    except ValueError:
        raise ValueError("is not a PEM certificate (-----BEGIN CERTIFICATE----- ...)") from None
    return value


Network = Annotated[ipaddress.IPv4Network | ipaddress.IPv6Network, BeforeValidator(_network)]
Ip4Network = Annotated[ipaddress.IPv4Network, BeforeValidator(_ip4_network)]
Address = Annotated[str, AfterValidator(_address)]
IpAddress = Annotated[str, AfterValidator(_ip)]
Domain = Annotated[str, AfterValidator(_domain)]
BasicAuthPolicy = Literal["allowed", "disabled-by-default", "removed"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Org(_Frozen):
    """Organization-wide switches (Set-TransportConfig / Set-OrganizationConfig)."""

    smtp_client_authentication_disabled: bool = True
    basic_auth: BasicAuthPolicy = "allowed"
    reject_direct_send: bool = False
    allow_legacy_tls_clients: bool = False


class Mailbox(_Frozen):
    address: Address
    display_name: str | None = None  # the person's name in tokens (name); default: the local part
    password: str | None = Field(None, repr=False)  # never in a repr, a log line or an error
    smtp_client_authentication: Literal["enabled", "disabled", "inherit"] = "inherit"
    send_as: tuple[Address, ...] = ()
    # Entra application ids granted FullAccess to this mailbox (SMTP.SendAsApp, app-only OAuth).
    apps: tuple[str, ...] = ()
    # Conditional Access requires multi-factor authentication for this mailbox's sign-ins
    mfa_required: bool = False


class Connector(_Frozen):
    """An inbound connector "From: your organization's email server, To: Microsoft 365"."""

    name: str = Field(min_length=1)
    sender_ip_ranges: tuple[Network, ...] = ()
    certificate_domain: Annotated[str, AfterValidator(_certificate_domain)] | None = None
    require_tls: bool = False

    @model_validator(mode="after")
    def _one_way_to_match(self) -> Connector:
        if bool(self.sender_ip_ranges) == bool(self.certificate_domain):
            raise ValueError("a connector matches by sender_ip_ranges or by certificate_domain (one)")
        return self

    def matches_ip(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.sender_ip_ranges)

    def matches_certificate(self, names: tuple[str, ...]) -> bool:
        if not self.certificate_domain:
            return False
        want = self.certificate_domain
        for name in (n.lower() for n in names):
            if name == want:
                return True
            if want.startswith("*.") and name.endswith(want[1:]) and "." not in name[: -len(want) + 1]:
                return True
            if name.startswith("*.") and want == name:
                return True
        return False


class Limits(_Frozen):
    messages_per_minute: Annotated[int, Field(ge=1)] = 30
    recipients_per_day: Annotated[int, Field(ge=1)] = 10_000
    concurrent_connections_per_mailbox: Annotated[int, Field(ge=1)] = 3
    max_message_size: Annotated[int, Field(ge=1)] = 36_700_160  # 35 MB
    max_recipients_per_message: Annotated[int, Field(ge=1, le=1000)] = 500
    # Exchange Online's message header limit is 256 KB; beyond it, 552 5.3.4 at the end of data
    max_header_size: Annotated[int, Field(ge=1024)] = 256 * 1024
    # MaxInboundConnectionPerSource of Exchange's receive connectors (EXO-REFERENCE added rows)
    max_connections_per_source: Annotated[int, Field(ge=1)] = 20


class App(_Frozen):
    """An app registration in Entra ID: what a device or an app signs in as."""

    client_id: Annotated[str, Field(min_length=1)]
    name: str = "Lab device"
    secret: str | None = Field(None, repr=False)  # client credentials; masked wherever a run writes
    # or a certificate (PEM) whose key signs the app's client assertions (private_key_jwt)
    certificate: Annotated[str, AfterValidator(_certificate_pem)] | None = Field(None, repr=False)
    redirect_uris: tuple[str, ...] = ()
    delegated_scopes: tuple[str, ...] = ("SMTP.Send", "offline_access", "openid", "profile", "email")
    send_as_app: bool = False  # SMTP.SendAsApp granted, with admin consent (app-only)
    disabled: bool = False
    # "Allow public client flows" (device code, ROPC, no secret); by default: an app without credentials
    public_client: bool | None = None
    multi_tenant: bool = False  # signInAudience; single-tenant apps are not served on /common or /organizations

    @property
    def is_public(self) -> bool:
        """Whether the app may sign in without a credential of its own (a public client)."""
        if self.public_client is not None:
            return self.public_client
        return not (self.secret or self.certificate)


class Identity(_Frozen):
    """Token lifetimes of the identity platform; short ones let a scenario see an expiry."""

    access_token_lifetime: Annotated[int, Field(ge=1)] = 3599
    # with a maximum, each access token's lifetime is drawn between the two (Entra's default: 3600-5400)
    access_token_lifetime_max: Annotated[int, Field(ge=1)] | None = None
    refresh_token_lifetime: Annotated[int, Field(ge=1)] = 90 * 24 * 3600
    device_code_lifetime: Annotated[int, Field(ge=1)] = 900
    polling_interval: Annotated[int, Field(ge=1)] = 5

    @field_validator("access_token_lifetime_max")
    @classmethod
    def _a_range(cls, value: int | None, info: ValidationInfo) -> int | None:
        low = info.data.get("access_token_lifetime")
        if value is not None and low is not None and value < low:
            raise ValueError(f"is below access_token_lifetime ({low})")
        return value


class Dns(_Frozen):
    """The tenant's public DNS as the lab server publishes it."""

    spf: bool = True
    spf_ip4: tuple[Ip4Network, ...] = ()
    spf_all: Literal["~all", "-all", "?all"] = "~all"


class Lab(_Frozen):
    """Who plays which part in a conformance run (``fakes.exo.lab``); each one left out is derived."""

    submitter: Address | None = None
    send_as: Address | None = None
    foreign_sender: Address | None = None
    internal: Address | None = None
    internal_2: Address | None = None
    external: Address | None = None
    mx_sender: Address | None = None
    spf_source: IpAddress | None = None
    ip_connector_source: IpAddress | None = None
    unlisted_source: IpAddress | None = None


class Tenant(_Frozen):
    schema_version: Literal[1]
    tenant: Annotated[str, Field(pattern=_TENANT.pattern)]
    # Entra's tenant id; default: one derived from the tenant's name, the same in every run
    tenant_id: uuid.UUID | None = None
    accepted_domains: tuple[Domain, ...] = Field(min_length=1)
    # the MX host, when the one Microsoft derives from the first accepted domain would not be a DNS name
    mx: Domain | None = None
    org: Org = Org()
    mailboxes: tuple[Mailbox, ...] = ()
    limits: Limits = Limits()
    connectors: tuple[Connector, ...] = ()
    dns: Dns = Dns()
    lab: Lab = Lab()
    apps: tuple[App, ...] = ()
    identity: Identity = Identity()

    @model_validator(mode="after")
    def _consistent(self) -> Tenant:
        domains: set[str] = set()
        for i, domain in enumerate(self.accepted_domains):
            if domain in domains:
                raise ValueError(f"accepted_domains[{i}]={domain!r} is listed twice")
            domains.add(domain)
        label = self.accepted_domains[0].replace(".", "-")
        if self.mx is None and len(label) > 63:
            raise ValueError(f"accepted_domains[0]={self.accepted_domains[0]!r} gives an MX host label of "
                             f"{len(label)} octets (at most 63): name the tenant's MX host with mx:")
        if self.mx is None and len(label + MX_SUFFIX) > 253:
            raise ValueError(f"accepted_domains[0]={self.accepted_domains[0]!r} gives an MX host over 253 octets: "
                             "name the tenant's MX host with mx:")
        client_ids: set[str] = set()
        for i, app in enumerate(self.apps):
            if app.client_id in client_ids:
                raise ValueError(f"apps[{i}].client_id={app.client_id!r} is listed twice")
            client_ids.add(app.client_id)
        seen: set[str] = set()
        for i, box in enumerate(self.mailboxes):
            if box.address in seen:
                raise ValueError(f"mailboxes[{i}].address={box.address!r} is listed twice")
            seen.add(box.address)
            if not self.is_accepted(box.address):
                raise ValueError(
                    f"mailboxes[{i}].address={box.address!r} is not in an accepted domain"
                )
            for j, granted in enumerate(box.apps):
                if granted not in client_ids:
                    raise ValueError(f"mailboxes[{i}].apps[{j}]={granted!r} is the client_id of no app in apps")
        lab = self.lab
        for name in ("submitter", "internal", "internal_2"):
            address = getattr(lab, name)
            if address is not None and self.mailbox(address) is None:
                raise ValueError(f"lab.{name}={address!r} is not a mailbox of the tenant")
        submitter = self.mailbox(lab.submitter) if lab.submitter else None
        if submitter is not None and not submitter.password:
            raise ValueError(f"lab.submitter={lab.submitter!r} has no password to submit with")
        for name in ("foreign_sender", "mx_sender"):
            address = getattr(lab, name)
            if address is not None and not self.is_accepted(address):
                raise ValueError(f"lab.{name}={address!r} is not in an accepted domain")
        if lab.external is not None and self.is_accepted(lab.external):
            raise ValueError(f"lab.external={lab.external!r} is in an accepted domain, not outside the tenant")
        return self

    # -- reading it --------------------------------------------------------------------------

    @property
    def mx_host(self) -> str:
        """``contoso.com`` -> ``contoso-com.mail.protection.outlook.com`` (or the ``mx`` it names)."""
        return self.mx or self.accepted_domains[0].replace(".", "-") + MX_SUFFIX

    @property
    def guid(self) -> str:
        """The tenant id Entra knows it by: ``tenant_id``, or a GUID derived from the tenant's name."""
        if self.tenant_id is not None:
            return str(self.tenant_id)
        return str(uuid.UUID(int=random.Random(self.tenant).getrandbits(128), version=4))

    @property
    def initial_domain(self) -> str:
        return f"{self.tenant}.onmicrosoft.com"

    def is_accepted(self, address_or_domain: str) -> bool:
        domain = address_or_domain.rpartition("@")[2].lower()
        return domain in self.accepted_domains or domain == self.initial_domain

    def mailbox(self, address: str) -> Mailbox | None:
        address = address.lower()
        for box in self.mailboxes:
            if box.address == address:
                return box
        return None

    def app(self, client_id: str) -> App | None:
        return next((app for app in self.apps if app.client_id == client_id), None)

    def smtp_auth_enabled(self, box: Mailbox) -> bool:
        """The per-mailbox setting overrides the org's (Set-CASMailbox beats Set-TransportConfig)."""
        if box.smtp_client_authentication == "inherit":
            return not self.org.smtp_client_authentication_disabled
        return box.smtp_client_authentication == "enabled"

    def may_send_as(self, box: Mailbox, address: str) -> bool:
        address = address.lower()
        return address == box.address or address in box.send_as

    # -- making it --------------------------------------------------------------------------

    @classmethod
    def from_yaml(cls, text: str, source: str = "<tenant>") -> Tenant:
        return load_document(cls, text, source)

    @classmethod
    def load(cls, path: str | Path) -> Tenant:
        path = Path(path)
        return cls.from_yaml(read_text(path, "tenant file"), str(path))

    def with_overrides(self, overrides: dict[str, Any], source: str = "<overrides>") -> Tenant:
        """A new tenant with ``overrides`` deep-merged over this one: mappings merge, lists
        replace, and ``mailboxes`` (or ``apps``) given as a mapping by address (or client id) changes
        just those (``{"scanner@contoso.com": {"smtp_client_authentication": "disabled"}}``)."""
        merged = _deep_merge(self.model_dump(mode="json"), overrides, source)
        return validate(type(self), merged, None, source)


# lists an override may change item by item, given as a mapping by each item's key
_KEYED = {"mailboxes": ("address", "mailbox"), "apps": ("client_id", "app")}


def _deep_merge(base: Any, patch: Any, source: str, path: str = "") -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            here = f"{path}.{key}" if path else str(key)
            out[key] = _deep_merge(base.get(key), value, source, here) if key in base else copy.deepcopy(value)
        return out
    if path in _KEYED and isinstance(base, list) and isinstance(patch, dict):
        key, what = _KEYED[path]
        by_key = {str(item[key]).lower(): dict(item) for item in base}
        for name, change in patch.items():
            if str(name).lower() not in by_key:
                raise ConfigError(f"no such {what} in the tenant", source=source, path=f"{path}.{name}",
                                  value=name, has_value=True)
            by_key[str(name).lower()] = _deep_merge(by_key[str(name).lower()], change, source, f"{path}.{name}")
        return list(by_key.values())
    return copy.deepcopy(patch)


def default_tenant() -> Tenant:
    """The bundled contoso tenant, as Microsoft's guide names its examples."""
    text = resources.files("fakes").joinpath("data/contoso.yaml").read_text(encoding="utf-8")
    return Tenant.from_yaml(text, "fakes/data/contoso.yaml")
