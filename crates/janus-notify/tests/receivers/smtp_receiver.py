"""A real SMTP server for crates/janus-notify/tests/email.rs: aiosmtpd with STARTTLS and AUTH required.

Each accepted message is parsed with Python's email package and written as JSON (envelope, headers,
MIME parts) to OUT/<n>.json, so the test checks what a mail system received. Recipients named
reject@... get a permanent 550, later@... a transient 451 (to test how the sink classifies them).

Usage: smtp_receiver.py PORT CERT KEY OUT USER PASSWORD   (prints READY when listening)
"""

import email
import email.policy
import json
import os
import signal
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, cert, key, out, user, password = sys.argv[1:7]


class Handler:
    def __init__(self):
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("reject@"):
            return "550 5.1.1 no such user"
        if address.startswith("later@"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        parts = []
        for part in msg.walk():
            if part.is_multipart():
                continue
            parts.append({"content_type": part.get_content_type(), "body": part.get_content()})
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": session.ssl is not None,
            "authenticated": bool(session.authenticated),
            "content_type": msg.get_content_type(),
            "headers": {k: str(v) for k, v in msg.items()},
            "parts": parts,
        }
        self.count += 1
        path = os.path.join(out, f"{self.count}.json")
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        return "250 Message accepted for delivery"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user and auth_data.password.decode() == password
    return AuthResult(success=ok)


ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
controller = Controller(
    Handler(),
    hostname="127.0.0.1",
    port=int(port),
    tls_context=ctx,
    require_starttls=True,
    authenticator=authenticator,
    auth_required=True,
    auth_require_tls=True,
)
controller.start()
print("READY", flush=True)
# The controller serves from its own thread; the test kills this process when it is done.
signal.pause()
