#!/usr/bin/env python3
"""Stand-in for Mailpit (axllent/mailpit v1.21): the SMTP side as nself uses it.

What it imitates, and where each fact comes from:
- config/config.go (VerifyConfig): SMTP authentication without a TLS certificate is
  refused at start unless MP_SMTP_AUTH_ALLOW_INSECURE is set ("SMTP authentication
  requires TLS encryption, run with `--smtp-auth-allow-insecure` ...").
- cmd/root.go: boolean MP_* variables are on when "1", "true" or "yes".
- internal/smtpd/main.go: only MP_SMTP_AUTH_ACCEPT_ANY (or an auth file) installs an
  AUTH handler; accept-any allows PLAIN and LOGIN, any user name and password.
- internal/smtpd/smtpd.go: without an AUTH handler EHLO lists no AUTH and AUTH answers
  "502 5.5.1 Command not implemented"; a mechanism not allowed answers "504 5.5.4";
  STARTTLS without a certificate answers 502; a message is "250 2.0.0 Ok: queued".
- the web API: GET /readyz, GET /api/v1/messages ({"total", "messages": [{"ID", "From",
  "To", "Subject"}]}), GET /api/v1/message/ID/raw; `mailpit readyz` asks /readyz.
Not imitated (the stand-in refuses to start rather than pretend): TLS (MP_SMTP_TLS_*),
password files (MP_SMTP_AUTH_FILE, MP_UI_AUTH_FILE), relaying.
"""

import base64
import email
import email.policy
import json
import os
import socket
import socketserver
import sys
import threading
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def on(name):
    return os.environ.get(name, "").lower() in ("1", "true", "yes")


def port_of(addr, default):
    return int(addr.rsplit(":", 1)[1]) if ":" in addr else default


SMTP_ADDR = os.environ.get("MP_SMTP_BIND_ADDR", "[::]:1025")
UI_ADDR = os.environ.get("MP_UI_BIND_ADDR", "[::]:8025")
DATABASE = os.environ.get("MP_DATABASE", "")
MAX_MESSAGES = int(os.environ.get("MP_MAX_MESSAGES", "500"))
ACCEPT_ANY = on("MP_SMTP_AUTH_ACCEPT_ANY")
ALLOW_INSECURE = on("MP_SMTP_AUTH_ALLOW_INSECURE")
LOCK = threading.Lock()
MESSAGES = []


def load():
    if DATABASE and os.path.exists(DATABASE):
        with open(DATABASE) as handle:
            MESSAGES.extend(json.loads(line) for line in handle if line.strip())


def store(sender, recipients, data, user):
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    entry = {
        "ID": uuid.uuid4().hex,
        "From": {"Address": sender},
        "To": [{"Address": r} for r in recipients],
        "Subject": str(parsed.get("Subject", "")),
        "Username": user,
        "Raw": data.decode("utf-8", "replace"),
    }
    with LOCK:
        MESSAGES.append(entry)
        del MESSAGES[:-MAX_MESSAGES]
        if DATABASE:
            with open(DATABASE, "a") as handle:
                handle.write(json.dumps(entry) + "\n")
    return entry["ID"]


class Session(socketserver.StreamRequestHandler):
    def reply(self, line):
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def read(self):
        line = self.rfile.readline(65536)
        if not line:
            raise EOFError
        return line.decode("utf-8", "replace").strip()

    def handle(self):
        host = socket.gethostname()
        sender, recipients, user = None, [], None
        self.reply(f"220 {host} Mailpit ESMTP Service ready")
        while True:
            try:
                line = self.read()
            except EOFError:
                return
            verb, _, args = line.partition(" ")
            verb = verb.upper()
            if verb in ("HELO", "EHLO"):
                sender, recipients = None, []
                if verb == "HELO":
                    self.reply(f"250 {host} greets {args}")
                    continue
                lines = [f"{host} greets {args}", "SIZE 0"]
                if ACCEPT_ANY:
                    lines.append("AUTH LOGIN PLAIN")
                lines += ["ENHANCEDSTATUSCODES", "SMTPUTF8"]
                for text in lines[:-1]:
                    self.reply("250-" + text)
                self.reply("250 " + lines[-1])
            elif verb == "STARTTLS":
                self.reply("502 5.5.1 Command not implemented")
            elif verb == "AUTH":
                if not ACCEPT_ANY:
                    self.reply("502 5.5.1 Command not implemented")
                    continue
                if user is not None:
                    self.reply("503 5.5.1 Bad sequence of commands (already authenticated)")
                    continue
                mech, _, rest = args.partition(" ")
                mech = mech.upper()
                if mech == "PLAIN":
                    if not rest:
                        self.reply("334 ")
                        rest = self.read()
                    try:
                        parts = base64.b64decode(rest, validate=True).split(b"\0")
                    except ValueError:
                        self.reply("501 5.5.2 Syntax error (unable to decode)")
                        continue
                    if len(parts) != 3:
                        self.reply("501 5.5.2 Syntax error (unable to parse)")
                        continue
                    user = parts[1].decode("utf-8", "replace")
                elif mech == "LOGIN":
                    self.reply("334 " + base64.b64encode(b"Username:").decode())
                    name = rest or self.read()
                    self.reply("334 " + base64.b64encode(b"Password:").decode())
                    self.read()
                    user = base64.b64decode(name).decode("utf-8", "replace")
                else:
                    self.reply("504 5.5.4 Unrecognized authentication type")
                    continue
                self.reply("235 2.7.0 Authentication successful")
            elif verb == "MAIL":
                sender = args.split(":", 1)[-1].strip().strip("<>").split(">")[0]
                recipients = []
                self.reply("250 2.1.0 Ok")
            elif verb == "RCPT":
                if sender is None:
                    self.reply("503 5.5.1 Bad sequence of commands (MAIL required before RCPT)")
                    continue
                recipients.append(args.split(":", 1)[-1].strip().strip("<>").split(">")[0])
                self.reply("250 2.1.5 Ok")
            elif verb == "DATA":
                if sender is None or not recipients:
                    self.reply(
                        "503 5.5.1 Bad sequence of commands (MAIL & RCPT required before DATA)"
                    )
                    continue
                self.reply("354 Start mail input; end with <CR><LF>.<CR><LF>")
                body = bytearray()
                while True:
                    raw = self.rfile.readline(1 << 20)
                    if not raw or raw == b".\r\n":
                        break
                    body += raw[1:] if raw.startswith(b".") else raw
                ident = store(sender, recipients, bytes(body), user)
                sender, recipients = None, []
                self.reply(f"250 2.0.0 Ok: queued as {ident}")
            elif verb == "RSET":
                sender, recipients = None, []
                self.reply("250 2.0.0 Ok")
            elif verb == "NOOP":
                self.reply("250 2.0.0 Ok")
            elif verb == "QUIT":
                self.reply(f"221 2.0.0 {host} Mailpit ESMTP Service closing transmission channel")
                return
            else:
                self.reply("500 5.5.2 Syntax error, command unrecognized")


class Web(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, code, body, kind="application/json"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?")[0]
        with LOCK:
            listed = [{k: v for k, v in m.items() if k != "Raw"} for m in reversed(MESSAGES)]
            raw = {m["ID"]: m["Raw"] for m in MESSAGES}
        if path in ("/readyz", "/livez"):
            self.answer(200, "ok", "text/plain")
        elif path == "/api/v1/messages":
            self.answer(200, json.dumps({"total": len(listed), "messages": listed}))
        elif path.startswith("/api/v1/message/") and path.endswith("/raw"):
            ident = path.split("/")[4]
            if ident in raw:
                self.answer(200, raw[ident], "text/plain")
            else:
                self.answer(404, "message not found", "text/plain")
        else:
            self.answer(404, "not found", "text/plain")


class SMTPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def readyz():
    url = f"http://127.0.0.1:{port_of(UI_ADDR, 8025)}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return 0 if response.status == 200 else 1
    except OSError:
        return 1


def main():
    if sys.argv[1:] == ["readyz"]:
        return readyz()
    unsupported = [
        n for n in ("MP_SMTP_TLS_CERT", "MP_SMTP_AUTH_FILE", "MP_UI_AUTH_FILE") if os.environ.get(n)
    ]
    if unsupported:
        print(f"stand-in: {', '.join(unsupported)} not imitated", file=sys.stderr)
        return 2
    if ACCEPT_ANY and not ALLOW_INSECURE:
        print(
            "SMTP authentication requires TLS encryption, run with "
            "`--smtp-auth-allow-insecure` to allow insecure authentication",
            file=sys.stderr,
        )
        return 1
    load()
    # IPv4 on every interface whatever the address says (containers here have no IPv6).
    smtp = SMTPServer(("0.0.0.0", port_of(SMTP_ADDR, 1025)), Session)
    web = ThreadingHTTPServer(("0.0.0.0", port_of(UI_ADDR, 8025)), Web)
    threading.Thread(target=smtp.serve_forever, daemon=True).start()
    print(f"[smtpd] starting on {SMTP_ADDR}", flush=True)
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    web.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
