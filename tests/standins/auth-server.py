#!/usr/bin/env python3
"""Stand-in for nhost/hasura-auth 0.36: start-up requirements and the mailer.

Imitated, with where each fact comes from (nhost/hasura-auth, go/):
- cmd/serve.go: HASURA_GRAPHQL_JWT_SECRET is a required flag; the server listens on
  AUTH_PORT (4000); AUTH_SMTP_HOST, AUTH_SMTP_PORT (587), AUTH_SMTP_SECURE,
  AUTH_SMTP_USER, AUTH_SMTP_PASS, AUTH_SMTP_SENDER, AUTH_SMTP_AUTH_METHOD (PLAIN);
  email verification is required by default, so a sign-up sends a verification mail.
  nself's notes: the real image also needs HASURA_GRAPHQL_DATABASE_URL,
  HASURA_GRAPHQL_GRAPHQL_URL and HASURA_GRAPHQL_ADMIN_SECRET, so those are required too.
- notifications/stdlib.go (sendMail): TLS from the first byte when AUTH_SMTP_SECURE,
  with the certificate checked against the host; EHLO "hasura-auth"; STARTTLS whenever
  the server offers it (certificate checked); then AUTH every time, whatever the server
  advertised (Go's smtp.Client.Auth does not look); then MAIL, RCPT, DATA, QUIT.
- notifications/stdlib.go (PlainAuth) and LoginAuth ("same security checks as PLAIN"):
  refuse, before sending anything, a connection without TLS unless the host is
  "mailhog", "localhost", "127.0.0.1" or "::1" ("unencrypted connection").
- a mail that cannot be sent makes the sign-up answer 500.
Not imitated: the database, Hasura metadata and migrations, tokens, sessions, every
other endpoint; CRAM-MD5 and the "postmark" host (the stand-in refuses them).
"""

import base64
import json
import os
import smtplib
import ssl
import sys
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REQUIRED = (
    "HASURA_GRAPHQL_JWT_SECRET",
    "HASURA_GRAPHQL_DATABASE_URL",
    "HASURA_GRAPHQL_GRAPHQL_URL",
    "HASURA_GRAPHQL_ADMIN_SECRET",
)
PLAIN_WITHOUT_TLS = ("mailhog", "localhost", "127.0.0.1", "::1")


def env(name, default=""):
    return os.environ.get(name, default)


def flag(name):
    return env(name).lower() in ("1", "t", "true")


class MailError(Exception):
    pass


def check(code, message, want):
    if code != want:
        raise MailError(f"{code} {message.decode('utf-8', 'replace')}")


def send_verification(to):
    host, port = env("AUTH_SMTP_HOST"), int(env("AUTH_SMTP_PORT", "587") or "587")
    method = env("AUTH_SMTP_AUTH_METHOD", "PLAIN").upper()
    if host == "postmark" or method not in ("PLAIN", "LOGIN"):
        raise MailError(f"stand-in: {host if host == 'postmark' else method} not imitated")
    verify = ssl.create_default_context()
    try:
        if flag("AUTH_SMTP_SECURE"):
            client = smtplib.SMTP_SSL(
                host, port, local_hostname="hasura-auth", context=verify, timeout=10
            )
        else:
            client = smtplib.SMTP(host, port, local_hostname="hasura-auth", timeout=10)
    except OSError as exc:
        raise MailError(f"dial tcp {host}:{port}: {exc}") from exc
    with client:
        client.ehlo("hasura-auth")
        tls = flag("AUTH_SMTP_SECURE")
        if client.has_extn("starttls"):
            client.starttls(context=verify)
            client.ehlo("hasura-auth")
            tls = True
        user, password = env("AUTH_SMTP_USER"), env("AUTH_SMTP_PASS")
        if not tls and host not in PLAIN_WITHOUT_TLS:
            raise MailError("unencrypted connection")
        if method == "PLAIN":
            token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
            check(*client.docmd("AUTH", "PLAIN " + token), 235)
        else:
            code, message = client.docmd("AUTH", "LOGIN")
            check(code, message, 334)
            check(*client.docmd(base64.b64encode(user.encode()).decode()), 334)
            check(*client.docmd(base64.b64encode(password.encode()).decode()), 235)
        sender = env("AUTH_SMTP_SENDER")
        address = sender.rsplit("<", 1)[-1].rstrip(">") if "<" in sender else sender
        ticket = f"verifyEmail:{uuid.uuid4()}"
        link = (
            f"{env('AUTH_SERVER_URL')}/verify?ticket={ticket}&type=emailVerify"
            f"&redirectTo={env('AUTH_CLIENT_URL')}"
        )
        body = (
            f"X-Ticket: {ticket}\r\nX-Email-Template: email-verify\r\nX-Link: {link}\r\n"
            f"From: {sender}\r\nTo: {to}\r\nSubject: Verify your email\r\n"
            "Content-Type: text/html; charset=UTF-8\r\n\r\n"
            f'<a href="{link}">Verify your email</a>\r\n'
        )
        try:
            client.sendmail(address, [to], body.encode())
        except smtplib.SMTPException as exc:
            raise MailError(str(exc)) from exc


class Api(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, code, payload):
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.split("?")[0] == "/healthz":
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        else:
            self.answer(404, {"status": 404, "error": "route-not-found"})

    def do_POST(self):
        if self.path.split("?")[0] != "/signup/email-password":
            self.answer(404, {"status": 404, "error": "route-not-found"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            to = json.loads(self.rfile.read(length))["email"]
            send_verification(to)
        except (ValueError, KeyError, TypeError):
            self.answer(400, {"status": 400, "error": "invalid-request"})
        except (MailError, smtplib.SMTPException, OSError) as exc:
            print(f"error sending email: {exc}", file=sys.stderr, flush=True)
            self.answer(
                500,
                {
                    "status": 500,
                    "error": "internal-server-error",
                    "message": "internal server error",
                },
            )
        else:
            self.answer(200, {"session": None})


def main(argv):
    missing = [name for name in REQUIRED if not env(name)]
    if missing:
        print(f"Required flags not set: {', '.join(missing)}", file=sys.stderr)
        return 1
    if argv[:1] == ["send-verification"] and len(argv) == 2:
        try:
            send_verification(argv[1])
        except (MailError, smtplib.SMTPException, OSError) as exc:
            print(f"error sending email: {exc}", file=sys.stderr)
            return 1
        print(f"verification mail sent to {argv[1]}")
        return 0
    if argv[:1] != ["serve"]:
        print("usage: hasura-auth serve | send-verification ADDRESS", file=sys.stderr)
        return 2
    server = ThreadingHTTPServer((env("AUTH_HOST", "0.0.0.0"), int(env("AUTH_PORT", "4000"))), Api)
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
