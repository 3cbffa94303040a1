"""The baseline: stock aiosmtpd with a handler that keeps nothing, in the same TLS and AUTH shape as
the edge's submission endpoint (STARTTLS with the lab's certificate, AUTH LOGIN required) and a
plain listener for the MX shape. Prints ``{"submission": "host:port", "mx": "host:port"}`` once
both listen; runs until killed.

    python bench/baseline_server.py --state-dir DIR [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class KeepNothing:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


def accept_the_lab_password(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.password == b"Scan-2026!"
    return AuthResult(success=ok)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.state_dir / "submission.pem", args.state_dir / "submission.key")
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    loop = asyncio.get_running_loop()
    submission = await loop.create_server(
        lambda: SMTP(KeepNothing(), hostname="baseline", tls_context=context, require_starttls=True,
                     auth_required=True, auth_require_tls=True, authenticator=accept_the_lab_password),
        args.host, 0)
    mx = await loop.create_server(lambda: SMTP(KeepNothing(), hostname="baseline"), args.host, 0)
    where = {name: "{}:{}".format(*server.sockets[0].getsockname()[:2])
             for name, server in (("submission", submission), ("mx", mx))}
    print(json.dumps(where), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
