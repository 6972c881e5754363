"""A fault-injecting HTTP proxy in front of an S3 server, for tests.

    python tests/s3proxy.py UPSTREAM_PORT LISTEN_PORT CONTROL_FILE

Forwards every request to 127.0.0.1:UPSTREAM_PORT. The control file (read
on every request) holds rules, one per line:

    every N 503          answer 503 SlowDown to every Nth request (throttling)
    every N reset        close the connection without an answer
    every N stall S      wait S seconds before forwarding (a timeout)
    fail METHOD PREFIX   answer 403 to METHOD requests whose path contains PREFIX
    hold METHOD PREFIX   hold METHOD requests whose path contains PREFIX until
                         this rule is removed from the control file

It prints how many requests it saw and failed to its log on exit.
"""

from __future__ import annotations

import http.client
import http.server
import socket
import sys
import threading
import time
from pathlib import Path

UPSTREAM = 0
CONTROL = Path()
_count = 0
_count_lock = threading.Lock()


def _rules() -> list[list[str]]:
    try:
        return [line.split() for line in CONTROL.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _handle(self) -> None:
        global _count
        with _count_lock:
            _count += 1
            n = _count
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        for rule in _rules():
            if rule[0] == "every" and n % int(rule[1]) == 0:
                if rule[2] == "503":
                    self._answer(503, b"<Error><Code>SlowDown</Code><Message>slow down"
                                      b"</Message></Error>")
                    return
                if rule[2] == "reset":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if rule[2] == "stall":
                    time.sleep(float(rule[3]))
            if rule[0] == "hold" and self.command == rule[1] and rule[2] in self.path:
                while any(r[:3] == rule[:3] for r in _rules()):
                    time.sleep(0.05)
            if rule[0] == "fail" and self.command == rule[1] and rule[2] in self.path:
                self._answer(403, b"<Error><Code>AccessDenied</Code><Message>denied by the "
                                  b"test</Message></Error>")
                return
        conn = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


def main() -> None:
    global UPSTREAM, CONTROL
    UPSTREAM, listen, CONTROL = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", listen), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
