#!/usr/bin/env python3
"""SMTP sink for Roster's tests (aiosmtpd).

Listens on 127.0.0.1 (--port, 0 = any free port), prints `READY port=N` once it accepts connections, and
stores every received message as one JSON file in --dir: {from, to, subject, message_id, content_type,
text, html, raw}. Files are written before the server answers 250, so an accepted mail is never lost, and
the directory survives a kill and a restart on the same port (how tests simulate an outage).
Recipients containing "reject" are refused with 550 (a permanent per-recipient error).

With --lean (the benchmark's mode, `make bench`), nothing is parsed or stored per message: each accepted
message appends its arrival time in ns as one line to DIR/arrivals.log before the 250. MIME parsing and one
JSON file per message cost this Python sink about 3.7 ms of CPU per message, more than the sender it is
meant to measure; lean, about 1.5 ms.
"""

import argparse
import asyncio
import email
import email.policy
import json
import os
import signal
import time
import uuid

from aiosmtpd.smtp import SMTP


class Store:
    def __init__(self, directory, lean=False):
        self.directory = directory
        self.arrivals = open(os.path.join(directory, "arrivals.log"), "a", encoding="ascii") if lean else None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if "reject" in address:
            return "550 5.1.1 Mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.arrivals is not None:
            self.arrivals.write(f"{time.time_ns()}\n")
            self.arrivals.flush()
            return "250 Message accepted for delivery"
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        text = html = None
        for part in msg.walk():
            if part.is_multipart():
                continue
            ctype = part.get_content_type()
            if ctype == "text/plain" and text is None:
                text = part.get_content()
            elif ctype == "text/html" and html is None:
                html = part.get_content()
        record = {
            "from": envelope.mail_from,
            "to": list(envelope.rcpt_tos),
            "subject": str(msg.get("Subject", "")),
            "message_id": str(msg.get("Message-ID", "")),
            "content_type": msg.get_content_type(),
            "text": text,
            "html": html,
            "raw": raw.decode("utf-8", "replace"),
        }
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex}.json"
        tmp = os.path.join(self.directory, "." + name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.replace(tmp, os.path.join(self.directory, name))
        return "250 Message accepted for delivery"


async def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--lean", action="store_true", help="only log arrival times (benchmarks)")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    handler = Store(args.dir, args.lean)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="roster-test-sink"),
        host="127.0.0.1",
        port=args.port,
        reuse_address=True,
    )
    port = server.sockets[0].getsockname()[1]
    print(f"READY port={port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
