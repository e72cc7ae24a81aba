"""Many clients, slow clients, bounded connections and graceful shutdown."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from protocol.envelope import receive_result

from bridge.journal import Journal
from firmware_sim.responder import ResponderMode
from tests.bridge.conftest import World, wait_until


def _attached(world: World, **sections):
    responder = world.responder()
    endpoint = world.endpoint("pty", responder)
    bridge = world.bridge([endpoint.bridge_url], **sections)
    wait_until(lambda: bridge.relay.attached("D1"), what="attached")
    return bridge, responder


def test_fifty_concurrent_his_clients(world: World) -> None:
    bridge, responder = _attached(world)
    envelopes = [world.seal("+1.00", f"MZ{i:03d}") for i in range(50)]
    barrier = threading.Barrier(50)

    def client(envelope) -> bytes:
        with requests.Session() as session:
            barrier.wait()
            response = session.post(bridge.url + "/v1/instructions?wait=60", data=envelope.to_bytes(), timeout=120)
            assert response.status_code == 200, response.text
            again = session.get(f"{bridge.url}/v1/results/{envelope.msg_id}", timeout=60)
            assert again.content == response.content
            return response.content

    with ThreadPoolExecutor(50) as pool:
        bodies = list(pool.map(client, envelopes))
    for envelope, body in zip(envelopes, bodies):
        assert receive_result(body, world.ring, now=time.time()).envelope.reply_to == envelope.msg_id
    assert all(responder.executions[e.msg_id] == 1 for e in envelopes)
    assert len(responder.executions) == 50


def test_a_client_sending_one_byte_per_second_does_not_stall_the_others(world: World) -> None:
    bridge, _ = _attached(world, http={"request_timeout_s": 3.0})
    host, port = bridge.http.server_address[:2]
    request = world.seal().to_bytes()
    head = f"POST /v1/instructions HTTP/1.1\r\nHost: x\r\nContent-Length: {len(request)}\r\n\r\n".encode() + request
    slow_answer: list[bytes] = []
    slow_done, slow_started = threading.Event(), threading.Event()

    def dribble() -> None:
        with socket.create_connection((host, port), timeout=30) as sock:
            try:
                for byte in head:
                    sock.sendall(bytes([byte]))
                    slow_started.set()
                    time.sleep(1.0)  # the slow client's pace: one byte a second (what is tested, not a wait)
            except OSError:
                pass  # the bridge gave up on us, as it should
            try:
                slow_answer.append(sock.recv(65536))
            except OSError:
                slow_answer.append(b"")
        slow_done.set()

    threading.Thread(target=dribble, daemon=True).start()
    assert slow_started.wait(10)  # its first byte is in before the ordinary clients begin
    for i in range(20):  # meanwhile, ordinary clients are served at full speed
        response = requests.post(bridge.url + "/v1/instructions?wait=10", data=world.seal(order=f"MZF{i}").to_bytes(), timeout=30)
        assert response.status_code == 200
    assert not slow_done.is_set()  # all 20 finished while the slow client was still dribbling
    assert slow_done.wait(30)
    assert b" 408 " in slow_answer[0] and b"request_timeout" in slow_answer[0]


def test_idle_connections_holding_every_slot_make_room_for_a_new_one(world: World) -> None:
    bridge = world.bridge(["socket://127.0.0.1:9"], http={"max_connections": 4, "idle_timeout_s": 1.0})
    host, port = bridge.http.server_address[:2]
    idle = [socket.create_connection((host, port)) for _ in range(4)]  # hold every slot, say nothing
    try:
        response = requests.get(bridge.url + "/v1/health", timeout=30)  # the longest-idle one is closed for it
        assert response.status_code == 200
        assert all(sock.recv(10) == b"" for sock in idle)  # the idle connections were closed by the bridge
    finally:
        for sock in idle:
            sock.close()


def test_graceful_shutdown_answers_long_polls_and_keeps_the_journal_consistent(world: World) -> None:
    responder = world.responder(mode=ResponderMode.SILENT)
    endpoint = world.endpoint("tcp", responder)
    bridge = world.bridge([endpoint.bridge_url])
    wait_until(lambda: bridge.relay.attached("D1"))
    envelope = world.seal()
    assert requests.post(bridge.url + "/v1/instructions?wait=0", data=envelope.to_bytes(), timeout=10).status_code == 202
    # The device's progress must be journaled before the stop, or the answer is an earlier state.
    wait_until(lambda: bridge.journal.get(envelope.msg_id).progress == "awaiting_scan", what="the device's progress")
    answers: list[requests.Response] = []
    poller = threading.Thread(target=lambda: answers.append(
        requests.get(f"{bridge.url}/v1/results/{envelope.msg_id}?wait=100", timeout=120)))
    poller.start()
    # The long poll must be inside the bridge before it stops (a fixed sleep lost this race under load).
    wait_until(lambda: bridge.relay.waiters.waiting(envelope.msg_id), what="the long poll to be waiting")
    bridge.stop()  # in-flight long poll is answered with the current state, not cut off
    poller.join(30)
    assert answers and answers[0].status_code == 202 and answers[0].json()["state"] == "awaiting_scan"
    try:
        requests.get(bridge.url + "/v1/health", timeout=2)
        raise AssertionError("the bridge still accepts connections after stop()")
    except requests.ConnectionError:
        pass
    with sqlite3.connect(world.dir / "journal.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    journal = Journal(world.dir / "journal.sqlite3")
    assert journal.get(envelope.msg_id).state.value == "progress"  # type: ignore[union-attr]  # the instruction was journaled above, so get() finds it
    journal.close()
