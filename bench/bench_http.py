"""The HIS-facing HTTP server under connection pressure (HIS interface 1.1 part D, issue 12 finding 5).

Set-up: bridge.httpapi.BridgeHTTPServer in this process on 127.0.0.1 with the default settings
(max_connections 200, first-byte timeout 2 s), answering GET /v1/health from a fixed health
document (the HTTP layer alone: no device, no journal). An attacker opens N idle loopback sockets
and says nothing; then HIS opens a new connection and asks for /v1/health.

- his_answer_with_250_idle_ms: HIS's connect + request + answer while 250 idle sockets are open
  (p50 and max of the rounds). Before the fix, 210 idle sockets made HIS wait 27 s.
- his_answer_idle_free_ms: the same request with nothing else open (baseline).
- evictions: idle connections the server closed to make room, per round.
"""

from __future__ import annotations

import http.client
import json
import socket
import statistics
import sys
import threading
import time

from bridge.config import HttpConfig
from bridge.httpapi import BridgeHTTPServer

IDLE = 250


def _his_request(port: int) -> float:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/v1/health")
        response = conn.getresponse()
        response.read()
        assert response.status == 200
    finally:
        conn.close()
    return (time.perf_counter() - started) * 1000


def run(quick: bool) -> dict[str, object]:
    rounds = 3 if quick else 10
    server = BridgeHTTPServer(HttpConfig(port=0), relay=None, health=lambda: {"status": "ok"})  # type: ignore[arg-type]  # the HTTP benchmark needs no relay: only /v1/health is asked
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        baseline = [_his_request(port) for _ in range(rounds)]
        loaded: list[float] = []
        evictions: list[int] = []
        for _ in range(rounds):
            before = server.evictions
            idle = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(IDLE)]
            try:
                loaded.append(_his_request(port))
                evictions.append(server.evictions - before)
            finally:
                for sock in idle:
                    sock.close()
            time.sleep(0.3)  # let the server see the closes before the next round
    finally:
        server.shutdown()
        server.server_close()
    figures = {
        "his_answer_with_250_idle_p50_ms": round(statistics.median(loaded), 2),
        "his_answer_with_250_idle_max_ms": round(max(loaded), 2),
        "evictions_per_round_p50": statistics.median(evictions),
    }
    return {"figures": figures, "baseline": {"his_answer_idle_free_p50_ms": round(statistics.median(baseline), 2)},
            "targets": {"his_answer_with_250_idle_max_ms": "<= 1000"},
            "met": {"his_answer_with_250_idle_max_ms": max(loaded) <= 1000}}


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
