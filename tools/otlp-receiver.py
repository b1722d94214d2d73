#!/usr/bin/python3
"""A tiny OTLP/HTTP JSON trace receiver for tests (standard library only).

    tools/otlp-receiver.py PORT OUT_FILE

Listens on 127.0.0.1:PORT (0 = the kernel picks) and prints the bound port and a newline,
flushed, as its first output. Every span of every POST to /v1/traces is appended to OUT_FILE
as one JSON line: the OTLP span object as sent, plus "service.name" from its resource. Answers
200 {} to a valid export, 400 to a body that is not OTLP JSON, 415 to protobuf, 404 elsewhere.
Runs until SIGTERM or SIGINT.
"""
import gzip
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def spans_of(doc):
    """Yields (service_name, span) for each span of an ExportTraceServiceRequest."""
    for rs in doc.get("resourceSpans") or []:
        service = None
        for attr in (rs.get("resource") or {}).get("attributes") or []:
            if attr.get("key") == "service.name":
                service = (attr.get("value") or {}).get("stringValue")
        for ss in rs.get("scopeSpans") or []:
            for span in ss.get("spans") or []:
                yield service, span


class Handler(BaseHTTPRequestHandler):
    server_version = "otlp-receiver/1"

    def reply(self, status, body=b"{}"):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path.split("?")[0] != "/v1/traces":
            self.reply(404)
            return
        if "protobuf" in (self.headers.get("Content-Type") or ""):
            self.reply(415)
            return
        try:
            if (self.headers.get("Content-Encoding") or "").lower() == "gzip":
                body = gzip.decompress(body)
            doc = json.loads(body)
            lines = []
            for service, span in spans_of(doc):
                rec = dict(span)
                rec["service.name"] = service
                lines.append(json.dumps(rec, separators=(",", ":")) + "\n")
        except (ValueError, OSError, AttributeError, TypeError):
            self.reply(400)
            return
        with self.server.out_lock:
            self.server.out.write("".join(lines))
            self.server.out.flush()
        self.reply(200)

    def log_message(self, fmt, *args):
        pass  # quiet: the spans file is the record


def main():
    if len(sys.argv) != 3:
        sys.stderr.write("usage: otlp-receiver.py PORT OUT_FILE\n")
        return 2
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.out = open(sys.argv[2], "a", encoding="utf-8")
    server.out_lock = threading.Lock()

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
        server.out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
