#!/usr/bin/env python3
"""hello-http: answers every GET with one line naming the machine and the version."""

import http.server
import os
import signal
import sys

HOST = os.environ.get("SMON_HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "8080"))
BODY = "hello from {} (hello-http {})\n".format(
    os.environ.get("SMON_MACHINE", "?"), os.environ.get("SMON_APP_VERSION", "?")
).encode()


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args):
        pass


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    http.server.ThreadingHTTPServer.allow_reuse_address = True
    server = http.server.ThreadingHTTPServer((HOST, PORT), Hello)
    print(f"hello-http listening on {HOST}:{PORT}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
