"""Every reply the simulated edge can give, as Exchange Online gives it, with where it was seen.

One table, no reply text anywhere else. ``Reply.render(context)`` produces the wire line;
replies marked ``suffix`` end with Exchange Online's `` [HOST timestamp id]`` diagnostic
suffix. The ``source`` keys and confidence marks are those of EXO-REFERENCE.md:
C = Microsoft documentation, O = observed in real transcripts, S = third-party article.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec


class ReplyContext(msgspec.Struct, frozen=True):
    """What a rendered reply needs from the session: who speaks, when, under which id."""

    host: str  # the server's name in the suffix, e.g. MN2PR05CA0004.namprd05.prod.outlook.com
    now: float  # UNIX time
    session_id: str  # 16 hex digits, the same for the whole connection

    @property
    def timestamp(self) -> str:
        fraction, whole = math.modf(self.now)  # rounded to the microsecond as datetime rounds it
        micros = round(fraction * 1e6)
        if micros >= 1_000_000:
            whole, micros = whole + 1, micros - 1_000_000
        return _timestamp(int(whole), micros // 1000)

    @property
    def suffix(self) -> str:
        return f"[{self.host} {self.timestamp} {self.session_id}]"


@functools.lru_cache(maxsize=4)  # the replies of one millisecond share it
def _timestamp(seconds: int, millis: int) -> str:
    """``2026-11-30T06:36:39.123Z``, as the suffix gives the time."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis:03d}Z"


@dataclass(frozen=True)
class Reply:
    code: int
    enhanced: str | None
    text: str
    source: str
    confirmed: str
    suffix: bool = False
    note: str = field(default="", compare=False)
    # its name in the catalog (SENDER_OK), given once the module is read (see CATALOG at the end)
    name: str = field(default="", compare=False)

    def render(self, ctx: ReplyContext | None = None, **fields: str) -> str:
        text = self.text.format(**fields) if fields else self.text
        parts = [str(self.code)]
        if self.enhanced:
            parts.append(self.enhanced)
        parts.append(text)
        if self.suffix and ctx is not None:
            parts.append(ctx.suffix)
        return " ".join(parts)


def name_of(reply: Reply | None) -> str | None:
    """A reply's name in this catalog (``SENDER_OK``), as records and reports give it."""
    return reply.name or None if reply is not None else None


def banner(host: str, now: float, session_id: str | None) -> str:
    """``220 HOST Microsoft ESMTP MAIL Service ready at <RFC 5322 date> [<16 hex>]``.

    [O] gh:simonrob/email-oauth2-proxy#95 (2022); the trailing hex id seen in 2025 (fs:51970297327).
    The MX's carries the id too since 2024 (EXO-REFERENCE observed: two 2025 logs, moderate); the
    2022 MX banner without it is history.
    """
    date = datetime.fromtimestamp(now, UTC).strftime("%a, %-d %b %Y %H:%M:%S +0000")
    tail = f" [{session_id}]" if session_id else ""
    return f"220 {host} Microsoft ESMTP MAIL Service ready at {date}{tail}"


# EHLO keywords, in the order seen on the wire.
# smtp.office365.com [O] gh:datawookie/emayili#147; fs:51970297327 (AUTH after TLS, in place of STARTTLS).
SUBMISSION_EXTENSIONS_PLAIN = (
    "SIZE 157286400", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES", "STARTTLS",
    "8BITMIME", "BINARYMIME", "CHUNKING", "SMTPUTF8",
)
SUBMISSION_EXTENSIONS_TLS = (
    "SIZE 157286400", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES", "AUTH LOGIN XOAUTH2",
    "8BITMIME", "BINARYMIME", "CHUNKING", "SMTPUTF8",
)
# The MX [O] fs:19373982211 lists the set with its order lost; the order here is the one seen on
# the Outlook.com MX in 2025 (fs:45373638250), with the tenant MX's SIZE 157286400. No AUTH on the MX.
MX_EXTENSIONS_PLAIN = (
    "SIZE 157286400", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES", "STARTTLS",
    "8BITMIME", "BINARYMIME", "CHUNKING", "SMTPUTF8",
)
MX_EXTENSIONS_TLS = tuple(e for e in MX_EXTENSIONS_PLAIN if e != "STARTTLS")


def ehlo_lines(host: str, client_ip: str, extensions: tuple[str, ...]) -> list[str]:
    """``250-HOST Hello [client-ip]`` then one line per extension, the last with a space."""
    lines = [f"{host} Hello [{client_ip}]", *extensions]
    return [f"250-{line}" for line in lines[:-1]] + [f"250 {lines[-1]}"]


def helo_line(host: str, client_ip: str) -> str:
    return f"250 {host} Hello [{client_ip}]"


# --- the catalog ------------------------------------------------------------------------------

STARTTLS_READY = Reply(220, "2.0.0", "SMTP server ready", "fs:51970297327", "O")
CLOSING = Reply(221, "2.0.0", "Service closing transmission channel", "RFC 5321 4.2.3", "UNCONFIRMED",
                note="Exchange's QUIT text; not quoted in the reference")
OK = Reply(250, "2.0.0", "OK", "RFC 5321", "UNCONFIRMED", note="NOOP/RSET text, not quoted in the reference")
RESET = Reply(250, "2.0.0", "Resetting", "Exchange RSET", "UNCONFIRMED", note="Exchange's RSET text")
SENDER_OK = Reply(250, "2.1.0", "Sender OK", "fs:51970297327", "O")
RECIPIENT_OK = Reply(250, "2.1.5", "Recipient OK", "fs:51970297327", "O")
START_MAIL_INPUT = Reply(354, None, "Start mail input; end with <CRLF>.<CRLF>", "fs:51970297327", "O")
# The MX's [O] gh:haraka/Haraka#1965 (2017).
QUEUED = Reply(
    250, "2.6.0",
    "<{message_id}> [InternalId={internal_id}, Hostname={hostname}] {size} bytes in {seconds}, "
    "{rate} KB/sec Queued mail for delivery",
    "gh:haraka/Haraka#1965", "O",
)
# smtp.office365.com's: EXO-REFERENCE "Observed in the wild", four public session logs 2019-2026.
SUBMITTED = Reply(250, "2.0.0", "OK <{message_id}> [Hostname={hostname}]",
                  "EXO-REFERENCE observed: four public session logs 2019-2026", "O (strong)")
AUTH_OK = Reply(235, "2.7.0", "Authentication successful", "OAUTH", "C")
# AUTH LOGIN prompts: base64 of "Username:" and "Password:", as every LOGIN server.
LOGIN_USERNAME = Reply(334, None, "VXNlcm5hbWU6", "RFC 4616 / draft-murchison-sasl-login", "C")
LOGIN_PASSWORD = Reply(334, None, "UGFzc3dvcmQ6", "RFC 4616 / draft-murchison-sasl-login", "C")
XOAUTH2_CONTINUE = Reply(334, None, "", "OAUTH (two-step sample)", "C")

# AUTH failures
AUTH_BAD_TOKEN = Reply(535, "5.7.3", "Authentication unsuccessful", "FIX; OAUTH; gh:jstedfast/MailKit#700",
                       "C+O", suffix=True)
AUTH_BAD_CREDENTIALS = Reply(
    535, "5.7.139", "Authentication unsuccessful, the user credentials were incorrect.",
    "gh:codassassin/email-bomber-v2.0#1", "O", suffix=True,
)
AUTH_DISABLED_TENANT = Reply(
    535, "5.7.139",
    "Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. "
    "Visit https://aka.ms/smtp_auth_disabled for more information.",
    "gh:simonrob/email-oauth2-proxy#193; gh:nodemailer/nodemailer#1484", "O", suffix=True,
)
AUTH_DISABLED_MAILBOX = Reply(
    535, "5.7.139",
    "Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox. "
    "Visit https://aka.ms/smtp_auth_disabled for more information.",
    "fs:59175296410", "O (weak)", suffix=True,
)
# Used for basic_auth: disabled-by-default (end of December 2026); the reply under that policy is
# UNCONFIRMED, so the text seen in the field for blocked basic auth stands in for it.
BASIC_AUTH_DISABLED = Reply(
    535, "5.7.139", "Authentication unsuccessful, basic authentication is disabled.",
    "gh:rpremraj/mailR#107; gh:nodemailer/nodemailer#1714", "O", suffix=True,
)
BASIC_AUTH_REMOVED = Reply(550, "5.7.30", "Basic authentication is not supported for Client Submission.",
                           "BA1", "C (announced)")
UNRECOGNIZED_AUTH = Reply(504, "5.7.4", "Unrecognized authentication type",
                          "gh:mattermost/mattermost#954; gh:maxisam/mgob#52", "O", suffix=True)
# [O partial] seen at the HVE endpoint; the rest of its text is UNCONFIRMED.
XOAUTH2_MALFORMED = Reply(501, "5.5.124", "Invalid XOAUTH2 auth data", "gh:tarickb/sasl-xoauth2#110",
                          "O (partial)", suffix=True)
# Exchange's answer to bad base64 in a LOGIN exchange is UNCONFIRMED; the closest confirmed
# reply for a failed AUTH exchange is the 5.7.3 one.
AUTH_CANCELLED = Reply(501, "5.0.0", "Authentication canceled", "RFC 4954 4", "UNCONFIRMED")
ALREADY_AUTHENTICATED = Reply(503, "5.5.2", "Already authenticated", "RFC 4954 4", "UNCONFIRMED")

# MAIL FROM
NOT_AUTHENTICATED = Reply(530, "5.7.57", "Client not authenticated to send mail.",
                          "gh:simonrob/email-oauth2-proxy#295; gh:NamelessMC/Nameless#1881; EXO-REFERENCE "
                          "observed (four public logs, with the period)", "O (strong)", suffix=True)
# Stage UNCONFIRMED in the reference; given at MAIL FROM, where a client first tries to send.
STARTTLS_REQUIRED = Reply(451, "5.7.3", "STARTTLS is required to send mail",
                          "gh:apache/hertzbeat#2365; gh:ictinnovations/ictfax#76", "O", suffix=True)
LEGACY_TLS = Reply(
    421, "4.7.66",
    "TLS 1.0 and 1.1 are not supported. Please upgrade/update your client to support TLS 1.2. "
    "Visit https://aka.ms/smtp_auth_tls.",
    "gh:zehm/sendEmail#1", "O", suffix=True,
)
# Sequence errors: Exchange's exact texts are UNCONFIRMED; RFC 5321 codes with Exchange's
# enhanced-code style.
NEED_HELO = Reply(503, "5.5.2", "Send hello first", "Exchange", "UNCONFIRMED", suffix=True)
NEED_MAIL = Reply(503, "5.5.2", "Need mail command", "Exchange", "UNCONFIRMED", suffix=True)
NEED_RCPT = Reply(503, "5.5.2", "Need rcpt command", "Exchange", "UNCONFIRMED", suffix=True)
NESTED_MAIL = Reply(503, "5.5.2", "Sender already specified", "Exchange", "UNCONFIRMED", suffix=True)
TLS_ALREADY = Reply(503, "5.5.2", "Only one STARTTLS command can be issued per session",
                    "Exchange", "UNCONFIRMED", suffix=True)
BAD_ADDRESS = Reply(501, "5.1.7", "Invalid address", "Exchange", "UNCONFIRMED", suffix=True)
SYNTAX_ERROR = Reply(501, "5.5.4", "Invalid arguments", "Exchange", "UNCONFIRMED", suffix=True)
# Exchange names the unknown verb by its length, never echoing it (EXO-REFERENCE observed: four
# lines in public logs); a line that is not text is 'unknown' (two logs). The older 'VERB' echo
# (gh:simonrob/email-oauth2-proxy#232) is history.
UNRECOGNIZED_COMMAND = Reply(500, "5.3.3", "Unrecognized command 'Length: {length}'",
                             "EXO-REFERENCE observed (four public logs)", "O (strong)", suffix=True)
UNREADABLE_COMMAND = Reply(500, "5.3.3", "Unrecognized command 'unknown'",
                           "EXO-REFERENCE observed (two public logs)", "O", suffix=True)
INVALID_DOMAIN = Reply(501, "5.5.4", "Invalid domain name", "EXO-REFERENCE observed (one log, EHLO and HELO)",
                       "O", suffix=True, note="an EHLO/HELO name with an empty label (MacBook..)")
MX_BARE_MAIL = Reply(501, "5.5.4", "Unrecognized parameter", "EXO-REFERENCE observed (one log, the MX)", "O",
                     suffix=True, note="MAIL with nothing after it, at the MX")

# STARTTLS or AUTH inside a mail transaction (after MAIL): the client did say hello, so not "Send
# hello first"; RFC 5321's 503 with Exchange's enhanced-code style, text UNCONFIRMED at Exchange Online.
BAD_SEQUENCE = Reply(503, "5.5.1", "Bad sequence of commands", "RFC 5321 4.3.2", "UNCONFIRMED", suffix=True,
                     note="STARTTLS or AUTH after MAIL")
BDAT_SEQUENCE = Reply(503, "5.5.1", "Bad sequence of commands", "RFC 3030 2", "UNCONFIRMED", suffix=True,
                      note="DATA, MAIL or RCPT in the middle of a BDAT transaction")
BINARYMIME_NEEDS_BDAT = Reply(503, "5.5.1", "BODY=BINARYMIME requires BDAT", "RFC 3030 3", "UNCONFIRMED",
                              suffix=True)
UNSUPPORTED_PARAMETER = Reply(555, "5.5.4", "Unsupported parameter", "RFC 5321 4.1.1.11", "UNCONFIRMED",
                              suffix=True, note="a MAIL or RCPT parameter of an extension not advertised")
NEEDS_SMTPUTF8 = Reply(553, "5.6.7", "Non-ASCII addresses require SMTPUTF8", "RFC 6531 3.5", "UNCONFIRMED",
                       suffix=True)
LINE_TOO_LONG = Reply(500, "5.5.2", "Line too long", "RFC 5321 4.5.3.1.4", "UNCONFIRMED", suffix=True,
                      note="a command line over 64 KiB, refused whole")
# Exchange's receive connectors drop a client after MaxProtocolErrors (default 5) with this line;
# the same at Exchange Online is UNCONFIRMED.
TOO_MANY_ERRORS = Reply(421, "4.7.0", "Too many errors on this connection, closing transmission channel",
                        "Exchange receive connector MaxProtocolErrors", "UNCONFIRMED", suffix=True)
# EXO-REFERENCE added rows: MaxInboundConnectionPerSource (default 20); the same words for the
# edge's cap on all connections.
TOO_MANY_CONNECTIONS = Reply(
    421, "4.3.2",
    "The maximum number of concurrent connections has exceeded a limit, closing transmission channel",
    "Exchange receive connectors, public admin notes", "O",
)
# [O] gh:haraka/Haraka#2321 shows the text in an NDR; said on the wire here when a client is idle.
TIMED_OUT = Reply(421, "4.4.1", "Connection timed out. Total session duration: {duration}",
                  "gh:haraka/Haraka#2321; gh:foxcpp/maddy#693", "O (partial)")

# BDAT (RFC 3030): every chunk but the last; the last gets the same reply as the end of DATA.
# [O] Exchange transport's own response table, as EXO-REFERENCE's added rows give it.
CHUNK_RECEIVED = Reply(250, "2.6.0", "CHUNK received OK, {size} octets", "EXO-REFERENCE added rows", "O")

# End of DATA
# 2022-2025 (EXO-REFERENCE observed, three public logs); the diagnostic data after "Cannot submit
# message." differs per log and is not reproduced. History: 554 5.2.0 STOREDRV.Submission.Exception:
# SendAsDeniedException... (2019-2021); 550 5.7.60 SMTP; Client does not have permissions to send as
# this sender (2017, and still in the guide: FIX; gh:PHPMailer/PHPMailer#1231).
SEND_AS_DENIED = Reply(
    554, "5.2.252",
    "SendAsDenied; {login} not allowed to send as {sender}; STOREDRV.Submission.Exception:"
    "SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process message due to a permanent exception "
    "with message [BeginDiagnosticData]Cannot submit message.",
    "EXO-REFERENCE observed (three public logs 2022-2025)", "O (strong)", suffix=True)
# 2024-2025 (two production logs; Microsoft's page corrected to this text in 2025), ending in
# [Hostname=...] rather than the usual suffix. History: STOREDRV.ClientSubmit; sender thread limit
# exceeded (2018; SUB, gh:timeoff-management/timeoff-management-application#308).
CONCURRENCY_LIMIT = Reply(
    432, "4.3.2",
    "Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending for more information. "
    "[Hostname={hostname}]", "EXO-REFERENCE observed (two production logs); SUB (2025)", "O")
DAILY_QUOTA = Reply(554, "5.2.0", "STOREDRV.Submission.Exception:SubmissionQuotaExceededException",
                    "SUB", "C", suffix=True)
# Code and text UNCONFIRMED at Exchange Online; Exchange's wording with 552 5.3.4.
MESSAGE_TOO_LARGE = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size",
                          "gh:pankleks/pm2-health#52", "UNCONFIRMED", suffix=True)
HEADERS_TOO_LARGE = Reply(552, "5.3.4", "Header size exceeds fixed maximum size",
                          "gh:jstedfast/MailKit#904", "O", suffix=True)
# Exchange's recipient-limit reply; text UNCONFIRMED at Exchange Online.
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients", "RFC 5321 4.5.3.1.10; Exchange",
                            "UNCONFIRMED", suffix=True)
BARE_LF = Reply(
    550, "5.6.11",
    "SMTPSEND.BareLinefeedsAreIllegal; message contains bare linefeeds, which cannot be sent via "
    "DATA and receiving system does not support BDAT",
    "gh:haraka/Haraka#2859", "O (text partly UNCONFIRMED)", suffix=True,
)
MISSING_FROM_HEADER = Reply(550, "5.7.512", "Access denied, message must be RFC 5322 section 3.6.2 compliant",
                            "NDR", "C", suffix=True)
BAD_OUTBOUND_SENDER = Reply(550, "5.1.8", "Access denied, bad outbound sender", "FIX; NDR", "C", suffix=True,
                            note="a sender blocked as a spammer")
# What an adapter answers when the edge itself failed: never aiosmtpd's "500 Error: (Type)".
HARNESS_FAULT = Reply(451, "4.3.0", "Mail server temporarily rejected message.", "Exchange", "UNCONFIRMED",
                      suffix=True, note="the edge failed, not the sender")

# MX (direct send and connector relay)
RELAY_DENIED_CONNECTOR = Reply(550, "5.7.64", "TenantAttribution; Relay Access Denied",
                               "relay-access-denied-smtp.md; gh:ictinnovations/ictfax#76", "C+O",
                               suffix=True)
DIRECT_SEND_REJECTED = Reply(
    550, "5.7.68",
    "TenantInboundAttribution; Direct Send not allowed for this organization from unauthorized sources",
    "RDS; maester.dev/docs/tests/MT.1062", "C", suffix=True,
)
RELAY_NOT_ALLOWED = Reply(550, "5.7.54", "SMTP; Unable to relay recipient in non-accepted domain",
                          "EXO-REFERENCE added rows", "O", suffix=True)
RECIPIENT_REJECTED = Reply(550, "5.4.1", "Recipient address rejected: Access denied. AS(201806281)",
                           "NDR; gh:zone-eu/zone-mta#214", "C+O", suffix=True)
CONNECTOR_REQUIRES_TLS = Reply(
    451, "5.7.3", "STARTTLS is required to send mail", "gh:apache/hertzbeat#2365", "O", suffix=True,
    note="a connector with require_tls and a plaintext session; the text of the submission endpoint",
)

# Non-delivery reports (statuses inside an NDR, not SMTP replies on the wire)
NDR_DOMAIN_NONEXISTENT = Reply(
    550, "5.4.310",
    "DNS domain {domain} does not exist [Message=InfoDomainNonexistent] [LastAttemptedServerName={domain}]",
    "gh:crisp-oss/email-bounce-parser outlook.txt (2023 NDR)", "O",
)
NDR_RECIPIENT_NOT_FOUND = Reply(550, "5.1.10",
                                "RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
                                "NDR; fs:40138770286", "C+O")


# --- the identity platform (login.microsoftonline.com) ---------------------------------------------


@dataclass(frozen=True)
class IdentityReply:
    """An error of the Microsoft identity platform v2.0: HTTP status, OAuth ``error``, AADSTS code."""

    status: int
    error: str
    aadsts: int
    text: str
    source: str
    confirmed: str
    suberror: str | None = None  # the classification MSAL acts on (bad_token: drop the refresh token sent)

    def description(self, **fields: str) -> str:
        return f"AADSTS{self.aadsts}: {self.text.format(**fields) if fields else self.text}"


# [O] learn.microsoft.com/answers 981553 (2022), the shape and text of EXO-REFERENCE 3a
AUTHORIZATION_PENDING = IdentityReply(
    400, "authorization_pending", 70016,
    "The provided request has not yet been authorized by the user. The user must input their code.",
    "EXO-REFERENCE 3a; learn.microsoft.com/answers 981553", "O")
# Microsoft lists these errors (entra-docs v2-oauth2-device-code.md); the AADSTS codes and texts
# are the ones public error logs show for them, UNCONFIRMED where marked.
AUTHORIZATION_DECLINED = IdentityReply(
    400, "authorization_declined", 70000, "The user denied the authorization request.",
    "entra-docs v2-oauth2-device-code.md", "C (error); text UNCONFIRMED")
EXPIRED_DEVICE_CODE = IdentityReply(
    400, "expired_token", 70020,
    "The provided value for the input parameter 'device_code' is not valid. This device code has expired.",
    "entra-docs v2-oauth2-device-code.md; public error logs", "C (error); O (text)")
# Microsoft's reference names 70019 CodeExpired, but every public log of an expired device code at the
# token endpoint shows 70020 with this text (gh:Azure/azure-cli#22251, gh:MicrosoftDocs/azure-docs#92366,
# gh:Azure/azure-sdk-for-python#32375): the wire wins.
BAD_VERIFICATION_CODE = IdentityReply(
    400, "bad_verification_code", 70018,
    "Invalid verification code due to User typing in wrong user code for device code flow. Authorization "
    "isn't approved.", "entra-docs reference-error-codes.md (AADSTS70018 BadVerificationCode)",
    "C (code and its description); the service's own text UNCONFIRMED")
UNKNOWN_CLIENT = IdentityReply(
    400, "unauthorized_client", 700016,
    "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen "
    "if the application has not been installed by the administrator of the tenant or consented to by any "
    "user in the tenant. You may have sent your authentication request to the wrong tenant.",
    "public error logs (AADSTS700016)", "O")
APP_DISABLED = IdentityReply(
    400, "unauthorized_client", 7000112, "Application '{client_id}'({name}) is disabled.",
    "public error logs (AADSTS7000112)", "O")
INVALID_CLIENT_SECRET = IdentityReply(
    401, "invalid_client", 7000215,
    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, "
    "not the client secret ID, for a secret added to app '{client_id}'.",
    "public error logs (AADSTS7000215)", "O")
INVALID_SCOPE = IdentityReply(
    400, "invalid_scope", 70011,
    "The provided request must include a 'scope' input parameter. The provided value for the input parameter "
    "'scope' is not valid. The scope {scope} is not valid.",
    "public error logs (AADSTS70011)", "O")
UNSUPPORTED_GRANT = IdentityReply(
    400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type '{grant}'.",
    "public error logs (AADSTS70003)", "O (text partly UNCONFIRMED)")
REFRESH_TOKEN_REVOKED = IdentityReply(
    400, "invalid_grant", 50173,
    "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might "
    "have changed or reset their password.",
    "public error logs (AADSTS50173, with suberror bad_token: a 2021 transcript's full body)", "O",
    suberror="bad_token")
REFRESH_TOKEN_EXPIRED = IdentityReply(
    400, "invalid_grant", 700082,
    "The refresh token has expired due to inactivity. The token was issued on {issued} and was inactive for "
    "{inactive}.",
    "public error logs (AADSTS700082)", "O")
INVALID_CREDENTIALS = IdentityReply(
    400, "invalid_grant", 50126, "Error validating credentials due to invalid username or password.",
    "public error logs (AADSTS50126)", "O")
# Smart lockout: "By default, smart lockout locks an account from sign-in attempts for one minute
# after 10 failed attempts" (entra-docs howto-password-smart-lockout.md)
ACCOUNT_LOCKED = IdentityReply(
    400, "invalid_grant", 50053,
    "Your account is locked because you've tried to sign in too many times with an incorrect user ID or "
    "password.", "entra-docs reference-error-codes.md (AADSTS50053 IdsLocked)", "C (code); O (text)")
# the same code for a source address: "Or, sign-in was blocked because it came from an IP address with
# malicious activity" (entra-docs reference-error-codes.md, AADSTS50053). The page's own words for a
# device login page that stops taking codes are not public: UNCONFIRMED.
SOURCE_BLOCKED = IdentityReply(
    400, "invalid_grant", 50053,
    "Sign-in was blocked because it came from an IP address with malicious activity.",
    "entra-docs reference-error-codes.md (AADSTS50053 IdsLocked)",
    "C (code and cause); its use on the device login page and the text UNCONFIRMED")
MISSING_PARAMETER = IdentityReply(
    400, "invalid_request", 900144, "The request body must contain the following parameter: '{name}'.",
    "public error logs (AADSTS900144)", "O")
NO_CLIENT_CREDENTIAL = IdentityReply(
    401, "invalid_client", 7000218,
    "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
    "entra-docs reference-error-codes.md (AADSTS7000218)", "C")
APP_ONLY_SCOPE = IdentityReply(
    400, "invalid_scope", 1002012,
    "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with "
    "/.default suffixed to the resource identifier (application ID URI).",
    "public error logs (AADSTS1002012)", "O")
MALFORMED_REQUEST = IdentityReply(
    400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid.",
    "entra-docs reference-error-codes.md (AADSTS9002313); public error logs for a refresh token that is no "
    "token", "C (code); O (text)")
MALFORMED_FORM = IdentityReply(
    400, "invalid_request", 9002313, "Invalid request. Request is malformed or invalid.",
    "entra-docs reference-error-codes.md (AADSTS9002313 InvalidRequest)", "C (code and text); its use for a body "
    "that is not a form UNCONFIRMED")
SINGLE_TENANT_APP = IdentityReply(
    400, "invalid_request", 50194,
    "Application '{client_id}'({name}) is not configured as a multi-tenant application. Usage of the /common "
    "endpoint is not supported for such applications created after '10/15/2018'. Use a tenant-specific "
    "endpoint or configure the application to be multi-tenant.",
    "entra-docs reference-error-codes.md (AADSTS50194); public error logs", "C (code); O (text)")
GRANT_NEEDS_TENANT = IdentityReply(
    400, "invalid_request", 9001023,
    "The grant type isn't supported over the /common or /consumers endpoints. Please use the /organizations "
    "or tenant-specific endpoint.", "entra-docs reference-error-codes.md (AADSTS9001023)", "C")
POST_ONLY = IdentityReply(
    400, "invalid_request", 900561, "The endpoint only accepts POST, OPTIONS requests. Received a {verb} request.",
    "entra-docs reference-error-codes.md (AADSTS900561)", "C (code); text from its description")
UNKNOWN_TENANT = IdentityReply(
    400, "invalid_tenant", 90002,
    "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the "
    "correct cloud.", "public error logs (AADSTS90002)", "O")
# Conditional Access asks for a second factor the sign-in (or the refresh token's sign-in) lacks
MFA_REQUIRED = IdentityReply(
    400, "invalid_grant", 50076,
    "Due to a configuration change made by your administrator, or because you moved to a new location, you "
    "must use multi-factor authentication to access '00000002-0000-0ff1-ce00-000000000000'.",
    "public error logs (AADSTS50076 with suberror basic_action, 2020-2024 transcripts; the id is Office 365 "
    "Exchange Online's)", "O", suberror="basic_action")
# authorization code with PKCE (entra-docs reference-error-codes.md lists 50011, 501481, 50149, 65004)
REDIRECT_URI_MISMATCH = IdentityReply(
    400, "invalid_request", 50011,
    "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs configured "
    "for the application '{client_id}'. Make sure the redirect URI sent in the request matches one added to "
    "your application in the Azure portal.",
    "entra-docs reference-error-codes.md; public error logs (AADSTS50011)", "C (code); O (text)")
UNSUPPORTED_RESPONSE_TYPE = IdentityReply(
    400, "unsupported_response_type", 70005, "response_type is not enabled for the application.",
    "public error logs (AADSTS70005)", "O (text partly UNCONFIRMED)")
INVALID_CHALLENGE_METHOD = IdentityReply(
    400, "invalid_request", 50149, "Invalid Code_Challenge_method parameter.",
    "entra-docs reference-error-codes.md (AADSTS50149)", "C")
BAD_AUTHORIZATION_CODE = IdentityReply(
    400, "invalid_grant", 70000, "The provided value for the 'code' parameter is not valid.",
    "public error logs (AADSTS70000)", "O")
REDIRECT_URI_DIFFERS = IdentityReply(
    400, "invalid_grant", 70000,
    "The provided value for the 'redirect_uri' is not valid. The value must exactly match the redirect URI "
    "used to obtain the authorization code.", "RFC 6749 4.1.3 (the rule)", "text UNCONFIRMED")
PKCE_MISMATCH = IdentityReply(
    400, "invalid_grant", 501481,
    "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
    "entra-docs reference-error-codes.md; public error logs (AADSTS501481)", "C")
CONSENT_DECLINED = IdentityReply(
    400, "access_denied", 65004, "User declined to consent to access the app.",
    "public error logs (AADSTS65004)", "O")
# client assertions (an app's certificate credential)
ASSERTION_KEY_UNKNOWN = IdentityReply(
    401, "invalid_client", 700027,
    "The certificate with identifier used to sign the client assertion is not registered on application. "
    "[Reason - The key was not found., Thumbprint of key used by client: '{thumbprint}']",
    "public error logs (AADSTS700027)", "O")
ASSERTION_INVALID = IdentityReply(
    401, "invalid_client", 700027, "Client assertion failed signature validation. {why}",
    "public error logs (AADSTS700027)", "O (text partly UNCONFIRMED)")
ASSERTION_EXPIRED = IdentityReply(
    401, "invalid_client", 700024, "Client assertion is not within its valid time range.",
    "public error logs (AADSTS700024)", "O")
MORE_THAN_ONE_RESOURCE = IdentityReply(
    400, "invalid_scope", 28000,
    "Provided value for the input parameter scope is not valid because it contains more than one resource.",
    "public error logs (AADSTS28000)", "O")


# The device code answer's ``message``, by the language ``?mkt=`` names (entra-docs
# v2-oauth2-device-code.md: "localisable with ?mkt=xx-XX"). English: [O] learn.microsoft.com/answers
# 981553 (2022). German: the wording Microsoft's German documentation quotes for this message (its
# Azure Data Explorer and Resource Graph quickstarts, 2023-2025); the service's own German text is
# UNCONFIRMED.
DEVICE_CODE_MESSAGES = {
    "en": "To sign in, use a web browser to open the page {uri} and enter the code {code} to authenticate.",
    "de": "Verwenden Sie zum Anmelden einen Webbrowser, um die Seite {uri} zu öffnen, und geben Sie den Code "
          "{code} ein, um sich zu authentifizieren.",
}


def device_code_message(mkt: str | None, uri: str, code: str) -> str:
    """The message in the language ``mkt`` names (``de-DE``, ``de``), English for any other."""
    language = (mkt or "en").split("-", 1)[0].lower()
    return DEVICE_CODE_MESSAGES.get(language, DEVICE_CODE_MESSAGES["en"]).format(uri=uri, code=code)


# The catalog by name: every SMTP reply above, each told its own name once, as the module is read
# (a record or a report names a reply by it; a scenario's `reply: {name: ...}` check looks it up).
CATALOG: dict[str, Reply] = {name: value for name, value in list(globals().items()) if isinstance(value, Reply)}
for _name, _reply in CATALOG.items():
    if _reply.name:
        raise ImportError(f"{_name} is {_reply.name} under a second name: one name a reply")
    object.__setattr__(_reply, "name", _name)
del _name, _reply
