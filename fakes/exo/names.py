"""Where the edge is and what it speaks, by name: one home for each such fact.

Endpoints and the host names devices are told, their well-known ports, TLS versions in order,
and the syntax of an email address (the same for the wire and for tenant files).
"""

from __future__ import annotations

import re
from typing import Final, Literal

Endpoint = Literal["submission", "legacy", "mx"]  # what a session plays

SUBMISSION_HOST = "smtp.office365.com"
LEGACY_HOST = "smtp-legacy.office365.com"
SUBMISSION_NAMES = (SUBMISSION_HOST, LEGACY_HOST)
IDENTITY_HOST = "login.microsoftonline.com"
DEVICE_LOGIN_HOSTS = ("www.microsoft.com", "microsoft.com")  # verification_uri https://www.microsoft.com/link
IDENTITY_NAMES = (IDENTITY_HOST, *DEVICE_LOGIN_HOSTS)
MX_SUFFIX = ".mail.protection.outlook.com"  # contoso.com -> contoso-com.mail.protection.outlook.com
# The servers' own names, as replies give them: AM3PR05CA0094.outlook.office365.com (the banner),
# AM3PR05CA0094.eurprd05.prod.outlook.com (the suffix), AM5EUR02FT017.mail.protection.outlook.com
# (the MX's banner), AM5EUR02FT017.eop-EUR02.prod.protection.outlook.com (the MX's suffix)
SUBMISSION_SERVER_SUFFIX = ".outlook.office365.com"
SUBMISSION_FRONTEND_SUFFIX = ".prod.outlook.com"
MX_FRONTEND_SUFFIX = ".prod.protection.outlook.com"
# A {placeholder} in a scenario file, filled from the tenant's lab roles
PLACEHOLDER = re.compile(r"\{([a-z_0-9]+)\}")

# The edge's listeners by name, and the session each SMTP one runs.
SMTP_ENDPOINTS: dict[str, Endpoint] = {
    "submission": "submission", "submission-25": "submission", "legacy": "legacy", "mx": "mx",
}
ENDPOINT_NAMES = (*SMTP_ENDPOINTS, "implicit-tls", "identity", "dns")
ENDPOINT_HOSTNAMES = {  # the MX's name is the tenant's (mx_host)
    "submission": SUBMISSION_HOST, "submission-25": SUBMISSION_HOST, "legacy": LEGACY_HOST,
    "implicit-tls": SUBMISSION_HOST, "identity": IDENTITY_HOST,
}
# The port a device is configured with for each listener (tests bind ephemeral ones instead).
WELL_KNOWN_PORTS = {"submission": 587, "submission-25": 25, "legacy": 587, "implicit-tls": 465, "mx": 25,
                    "identity": 443, "dns": 53}

# TLS versions as Python's ssl module names them, oldest first, and as they appear on the wire.
TLS_VERSIONS = ("SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
TLS_WIRE_CODES = {0x0300: "SSLv3", 0x0301: "TLSv1", 0x0302: "TLSv1.1", 0x0303: "TLSv1.2", 0x0304: "TLSv1.3"}
LEGACY_TLS_VERSIONS = frozenset({"SSLv3", "TLSv1", "TLSv1.1"})  # refused with 4.7.66 at submission
MINIMUM_TLS: Final = "TLSv1.2"
MODERN_TLS_VERSIONS = ("TLSv1.2", "TLSv1.3")  # what Exchange Online requires (and login.microsoftonline.com serves)
# The MX refuses TLS 1.0 and 1.1 at the handshake (protocol_version) since 2021; TLS stays
# opportunistic there, so a sender that then retries in the clear is served (EXO-REFERENCE, MC229914).
MX_TLS_VERSIONS = MODERN_TLS_VERSIONS


def tls_at_least(version: str | None, minimum: str) -> bool:
    return version in TLS_VERSIONS and TLS_VERSIONS.index(version) >= TLS_VERSIONS.index(minimum)


# An email address: local@domain with a dot in the domain; UTF-8 allowed (RFC 6531, SMTPUTF8).
_ADDRESS = re.compile(r"^[^@\s<>()\[\],;:\"\\]+@(?:[^@\s<>()\[\],;:\"\\.]+\.)+[^@\s<>()\[\],;:\"\\.]{2,}$")


def is_address(text: str) -> bool:
    return bool(_ADDRESS.match(text))
