"""The device control API's contract: every route, every refusal code, QR images from the sandbox.

One configured device (TCP), its bridge and its control API serve the whole module; each test ends
with the POS idle again. Requests go over real HTTP on loopback.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import socket
from typing import Iterator

import pytest
import requests
from PIL import Image

from firmware_sim.control_api import MAX_BODY, ControlServer
from firmware_sim.device import LinkKind
from firmware_sim.sandbox.launcher import SandboxProcess
from firmware_sim.simerrors import SimError
from protocol.messages import PayStatus
from tests.e2e.world import PIN, Rig, SimWorld, new_order, sandbox_fixture, wait_until


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    yield from sandbox_fixture(tmp_path_factory)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, sandbox: SandboxProcess) -> Iterator[Rig]:
    world = SimWorld(tmp_path_factory.mktemp("control-api"), sandbox)
    try:
        yield world.rig(LinkKind.TCP, control=True)
    finally:
        world.cleanup()


def api(rig: Rig, method: str, path: str, body: object = None, *, raw: bytes | None = None) -> tuple[int, dict]:
    url = rig.control.url + path  # type: ignore[union-attr]
    if raw is not None:
        response = requests.request(method, url, data=raw, timeout=15)
    else:
        response = requests.request(method, url, json=body, timeout=15)
    assert response.headers["Content-Type"].startswith("application/json")
    return response.status_code, response.json()


def error(answer: tuple[int, dict]) -> tuple[int, str]:
    status, body = answer
    return status, body["error"]["code"]


def screen(rig: Rig) -> dict:
    return api(rig, "GET", "/v1/screen")[1]


def wait_screen(rig: Rig, name: str) -> dict:
    return wait_until(lambda: (s := screen(rig))["screen"] == name and s, what=f"screen {name}")  # type: ignore[return-value]


def test_status_names_the_device_its_boot_slot_and_its_link(rig: Rig) -> None:
    status, body = api(rig, "GET", "/v1/status")
    assert status == 200
    assert body["device"]["device_id"] == rig.device.identity.device_id and body["device"]["usb"]["vid"] == "1209"
    assert body["power"] == "on" and body["boot"]["slot"] == "a" and body["boot"]["config_version"] == "cfg-1"
    assert body["link"]["up"] and body["link"]["host"] == "bridge" and body["link"]["bridge_url"].startswith("socket://")
    assert abs(body["link"]["bridge_clock_offset_s"]) < 5


def test_refusals_have_stable_codes(rig: Rig) -> None:
    assert screen(rig)["screen"] in ("idle", "result")
    assert error(api(rig, "GET", "/v1/nowhere")) == (404, "not_found")
    assert error(api(rig, "GET", "/v1/scan")) == (405, "method_not_allowed")
    assert error(api(rig, "DELETE", "/v1/screen")) == (405, "method_not_allowed")
    assert error(api(rig, "POST", "/v1/scan", raw=b"{not json")) == (400, "malformed_json")
    assert error(api(rig, "POST", "/v1/scan", raw=b'{"code": "1", "code": "2"}')) == (400, "malformed_json")
    assert error(api(rig, "POST", "/v1/scan", {})) == (400, "bad_request")
    assert error(api(rig, "POST", "/v1/scan", {"code": "134567890123456789", "qr_png": "x"})) == (400, "bad_request")
    assert error(api(rig, "POST", "/v1/scan", {"code": 134567890123456789})) == (400, "bad_request")
    assert error(api(rig, "POST", "/v1/scan", {"code": "134567890123456789"})) == (409, "nothing_to_scan")
    assert error(api(rig, "POST", "/v1/cancel")) == (409, "nothing_to_cancel")
    assert error(api(rig, "POST", "/v1/refund/confirm", {"pin": PIN})) == (409, "nothing_to_confirm")
    assert error(api(rig, "POST", "/v1/refund/confirm", {})) == (400, "bad_request")
    assert error(api(rig, "POST", "/v1/refund/decline")) == (409, "nothing_to_confirm")
    assert error(api(rig, "POST", "/v1/recheck")) == (409, "nothing_needs_person")  # issue 17: nothing handed to a person
    assert error(api(rig, "POST", "/v1/faults", {"fault": "earthquake"})) == (400, "bad_fault")


def test_a_body_over_the_limit_is_refused_before_it_is_read(rig: Rig) -> None:
    host, port = rig.control.httpd.server_address[:2]  # type: ignore[union-attr]
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(f"POST /v1/scan HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n".encode())
        reply = ""
        while '"too_large"' not in reply and (chunk := conn.recv(65536)):  # the server answers, then closes
            reply += chunk.decode()
    assert reply.startswith("HTTP/1.1 413") and '"too_large"' in reply


def test_scan_refusals_keep_the_collection_open_and_codes_stay_masked(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    code = rig.issue("WECHAT")
    pending = rig.pay(new_order(), "+3.20")
    wait_screen(rig, "awaiting_scan")
    status, body = api(rig, "POST", "/v1/scan", {"code": "hello"})
    assert (status, body["error"]["code"], body["error"]["reason"]) == (422, "not_a_payment_code", "not_a_payment_code")
    assert body["error"]["text"]["zh"]
    status, body = api(rig, "POST", "/v1/scan", {"code": "https://example.com/pay"})
    assert (status, body["error"]["reason"]) == (422, "link_qr_code")
    shown = screen(rig)
    assert shown["screen"] == "awaiting_scan" and shown["notice"]["en"].startswith("This is a link QR code")
    with caplog.at_level(logging.INFO):
        status, body = api(rig, "POST", "/v1/scan", {"code": code})
    assert status == 200 and body["channel"] == "WECHAT" and body["code_masked"] == code[:4] + "*" * 10 + code[-4:]
    assert code not in caplog.text
    assert pending.result().pay_status is PayStatus.SUCCESS
    assert error(api(rig, "POST", "/v1/scan", {"code": code})) == (409, "nothing_to_scan")


@pytest.mark.parametrize("form", ["base64", "path", "data_url"])
def test_the_camera_reads_the_sandbox_qr_image(rig: Rig, form: str) -> None:
    issued = rig.world.sandbox.issue_code("ALIPAY", "20.00", "success")
    value = {"base64": issued["qr_png"], "path": issued["qr_path"], "data_url": "data:image/png;base64," + str(issued["qr_png"])}[form]
    pending = rig.pay(new_order(), "+7.77")
    wait_screen(rig, "awaiting_scan")
    status, body = api(rig, "POST", "/v1/scan", {"qr_png": value})
    assert status == 200, body
    assert (body["source"], body["channel"]) == ("camera", "ALIPAY")
    assert pending.result().pay_status is PayStatus.SUCCESS
    assert rig.balance_fen(str(issued["code"])) == 20_00 - 7_77


def test_pictures_without_a_code_are_refused(rig: Rig, tmp_path) -> None:  # type: ignore[no-untyped-def]
    blank = io.BytesIO()
    Image.new("L", (120, 120), 255).save(blank, "PNG")
    pending = rig.pay(new_order(), "+1.00")
    wait_screen(rig, "awaiting_scan")
    assert error(api(rig, "POST", "/v1/scan", {"qr_png": base64.b64encode(blank.getvalue()).decode()})) == (422, "qr_unreadable")
    assert error(api(rig, "POST", "/v1/scan", {"qr_png": base64.b64encode(b"not an image at all").decode()})) == (422, "qr_unreadable")
    assert error(api(rig, "POST", "/v1/scan", {"qr_png": str(tmp_path / "missing.png")})) == (400, "bad_request")
    status, body = api(rig, "POST", "/v1/cancel")
    assert status == 200 and body["message"]["en"].startswith("Cancelled")
    result = pending.result()
    assert (result.pay_status, result.error_code) == (PayStatus.CLOSED, "cancelled")


def test_refund_wrong_pin_then_declined(rig: Rig) -> None:
    code, order = rig.issue("WECHAT"), new_order()
    paid = rig.pay(order, "+10.00")
    wait_screen(rig, "awaiting_scan")
    api(rig, "POST", "/v1/scan", {"code": code})
    assert paid.result().pay_status is PayStatus.SUCCESS
    refund = rig.pay(order, "-4.00")
    shown = wait_screen(rig, "awaiting_supervisor")
    assert (shown["amount"], shown["direction"], shown["pin_tries_left"]) == ("-4.00", "-", 5)
    status, body = api(rig, "POST", "/v1/refund/confirm", {"pin": "000000"})
    assert (status, body["error"]["code"], body["error"]["tries_left"]) == (403, "wrong_pin", 4)
    assert screen(rig)["pin_tries_left"] == 4
    assert error(api(rig, "POST", "/v1/scan", {"code": code})) == (409, "nothing_to_scan")
    status, body = api(rig, "POST", "/v1/refund/decline")
    assert status == 200
    result = refund.result()
    assert (result.pay_status, result.error_code) == (PayStatus.REFUND_FAILED, "supervisor_declined")
    assert rig.balance_fen(code) == 90_00
    last = screen(rig)["last_result"]
    assert (last["order_no"], last["pay_status"], last["ok"]) == (order, "REFUND_FAILED", False)
    history = api(rig, "GET", f"/v1/history?order_no={order}")[1]["entries"]
    assert [(e["amount"], e["pay_status"]) for e in history] == [("-4.00", "REFUND_FAILED"), ("+10.00", "SUCCESS")]
    status, body = api(rig, "POST", "/v1/dismiss")
    assert status == 200 and body["screen"]["screen"] == "idle"


def test_faults_through_the_api(rig: Rig) -> None:
    status, faults = api(rig, "GET", "/v1/faults")
    assert status == 200 and set(faults) >= {"to_bridge", "to_device", "power_cut_at", "last_power_cut"}
    # A list is checked whole before anything is applied.
    assert error(api(rig, "POST", "/v1/faults", {"faults": [{"fault": "unplug"}, {"fault": "drop"}]})) == (400, "bad_fault")
    assert api(rig, "GET", "/v1/status")[1]["link"]["cable"] == "plugged"
    status, body = api(rig, "POST", "/v1/faults", {"faults": [{"fault": "delay", "direction": "to_bridge", "ms": 5},
                                                               {"fault": "power_cut", "at": "refunding"}]})
    assert status == 200 and body["applied"] == 2
    faults = api(rig, "GET", "/v1/faults")[1]
    assert faults["to_bridge"]["faults"] == [{"fault": "delay", "direction": "to_bridge", "probability": 1.0, "ms": 5}]
    assert faults["power_cut_at"] == {"fault": "power_cut", "at": "refunding", "phase": "after"}
    assert api(rig, "POST", "/v1/faults", {"fault": "clear"})[0] == 200
    assert api(rig, "GET", "/v1/faults")[1]["power_cut_at"] is None
    status, body = api(rig, "POST", "/v1/faults", {"fault": "unplug"})
    assert status == 200 and body["status"]["link"]["cable"] == "unplugged" and not body["status"]["link"]["up"]
    api(rig, "POST", "/v1/faults", {"fault": "replug"})
    wait_until(lambda: api(rig, "GET", "/v1/status")[1]["link"]["up"], what="the link after replug")


def test_power_off_and_on_through_the_api(rig: Rig) -> None:
    status, body = api(rig, "POST", "/v1/faults", {"fault": "power_cut"})
    assert status == 200 and body["status"]["power"] == "off"
    dark = screen(rig)
    assert (dark["power"], dark["screen"], dark["message"]["en"]) == ("off", "off", "The device is off")
    assert error(api(rig, "POST", "/v1/scan", {"code": "134567890123456789"})) == (409, "powered_off")
    assert error(api(rig, "POST", "/v1/faults", {"fault": "power_cut"})) == (409, "powered_off")
    status, body = api(rig, "POST", "/v1/faults", {"fault": "power_on"})
    assert status == 200 and body["status"]["power"] == "on"
    assert error(api(rig, "POST", "/v1/faults", {"fault": "power_on"})) == (409, "already_on")
    wait_until(lambda: rig.device.link_up, what="the link after power-on")
    code = rig.issue("WECHAT")
    pending = rig.pay(new_order(), "+2.00")
    wait_screen(rig, "awaiting_scan")
    api(rig, "POST", "/v1/scan", {"code": code})
    assert pending.result().pay_status is PayStatus.SUCCESS


def test_the_control_api_stays_on_loopback(rig: Rig) -> None:
    with pytest.raises(SimError) as refused:
        ControlServer(rig.device, host="0.0.0.0")
    assert refused.value.code.value == "bad_request" and "loopback" in refused.value.message
    assert json.loads(json.dumps(api(rig, "GET", "/v1/status")[1]))  # every answer is plain JSON
