#!/usr/bin/env python3
"""A local SMTP sink for guestpass's SMTP tests (tests/smtp.rs).

Usage: smtp_sink.py PORT OUTPUT_DIR

Runs an aiosmtpd server on 127.0.0.1:PORT. Every delivered message is
written to OUTPUT_DIR as NNNN.eml (the raw bytes received after DATA) with
NNNN.json next to it ({"mail_from": ..., "rcpt_tos": [...]}); the .json is
written first and the .eml appears atomically, so a present .eml is complete.
A recipient whose local part is `refused` is refused with 550.

The server stops when standard input reaches end of file (the test closed it,
or the test process died) or on SIGTERM/SIGINT.

Needs aiosmtpd: python3 -m pip install aiosmtpd
"""

import json
import os
import signal
import sys
import threading

try:
    from aiosmtpd.controller import Controller
except ImportError:
    sys.stderr.write(
        "smtp_sink: the Python package aiosmtpd is not installed; "
        "run `python3 -m pip install aiosmtpd`\n"
    )
    sys.exit(3)


class Sink:
    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.count = 0
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.rsplit("@", 1)[0].lower()
        if local == "refused":
            return "550 5.1.1 recipient refused by the test sink"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            n = self.count
        base = os.path.join(self.out_dir, "%04d" % n)
        with open(base + ".json", "w", encoding="utf-8") as f:
            json.dump({"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos}, f)
        tmp = base + ".eml.tmp"
        content = envelope.original_content or envelope.content
        with open(tmp, "wb") as f:
            f.write(content)
        os.replace(tmp, base + ".eml")
        return "250 Message accepted for delivery"


def main():
    if len(sys.argv) != 3:
        sys.stderr.write("usage: smtp_sink.py PORT OUTPUT_DIR\n")
        return 2
    port = int(sys.argv[1])
    out_dir = sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    controller = Controller(
        Sink(out_dir),
        hostname="127.0.0.1",
        port=port,
        server_hostname="sink.test",
        ready_timeout=10.0,
    )
    controller.start()
    sys.stdout.write("smtp_sink: listening on 127.0.0.1:%d\n" % port)
    sys.stdout.flush()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def watch_stdin():
        try:
            sys.stdin.read()
        finally:
            stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    stop.wait()
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
