"""An Android smart POS on USB, end to end through the real bridge (pyusb, `aoa://`), the simulated
Android device (firmware_sim.android_usb) and the POS app's own accessory wire: from "a phone is
plugged in" to an instruction and its result, across a cable pulled mid-frame and an app restart."""

from __future__ import annotations

import time

import pytest
import requests

from firmware_sim.android_usb import AndroidMode, VirtualAndroidDevice
from firmware_sim.responder import ResponderMode
from protocol.aoa import AoaRequest, is_vendor_request
from bridge.daemon import Bridge
from protocol.envelope import Received, receive_result
from tests.bridge.conftest import World, wait_until


def result_of(world: World, bridge: Bridge, msg_id: str) -> Received:
    got = requests.get(f"{bridge.url}/v1/results/{msg_id}?wait=20", timeout=40)
    assert got.status_code == 200, got.text
    return receive_result(got.content, world.ring, now=time.time())


@pytest.mark.parametrize("version", [1, 2])
def test_plugged_in_switched_instruction_result_then_a_cable_pulled_mid_frame(world: World, version: int) -> None:
    phone = VirtualAndroidDevice(serial_no="AP-0001", aoa_version=version)
    assert phone.mode is AndroidMode.PHONE and phone.usb_ids() == (0x1209, 0x7D02)  # an Android phone, as plugged in
    responder = world.responder(mode=ResponderMode.SILENT)
    endpoint = world.endpoint("aoa", responder, android=phone)
    assert endpoint.bridge_url == "aoa://1209:7D02/AP-0001"
    bridge = world.bridge([endpoint.bridge_url], usb_backend=endpoint.wire.backend)  # type: ignore[attr-defined]  # a USB endpoint's wire carries its virtual bus (backend)
    wait_until(lambda: bridge.relay.attached("D1"), what="the POS attached over the accessory")
    assert phone.mode is AndroidMode.ACCESSORY and phone.usb_ids() == (0x18D1, 0x2D01) and phone.switches == 1

    first = world.seal("+12.50", "MZ-AOA-1")
    assert requests.post(bridge.url + "/v1/instructions?wait=0", data=first.to_bytes(), timeout=10).status_code == 202
    wait_until(lambda: responder.executions[first.msg_id] == 1, what="the POS has the instruction")
    responder.release()
    assert result_of(world, bridge, first.msg_id).envelope.reply_to == first.msg_id

    # The next result leaves the POS half-way when the cable comes out.
    responder.mode = ResponderMode.SILENT
    second = world.seal("+30.00", "MZ-AOA-2")
    assert requests.post(bridge.url + "/v1/instructions?wait=0", data=second.to_bytes(), timeout=10).status_code == 202
    wait_until(lambda: responder.executions[second.msg_id] == 1, what="the POS has the second instruction")
    phone.cut_cable_mid_write(min_size=64)
    responder.release()
    wait_until(lambda: not phone.plugged, what="the cable pulled mid-frame")
    delivered, written = phone.last_cut
    assert 0 < delivered < written  # the bridge read half a frame, then the bus went away
    wait_until(lambda: bridge.health()["devices"][0]["link"] != "up", what="the bridge noticed")
    assert requests.get(f"{bridge.url}/v1/results/{second.msg_id}", timeout=10).status_code == 202  # not lost, pending

    phone.replug()  # back as a phone: the bridge must switch it again
    assert result_of(world, bridge, second.msg_id).envelope.reply_to == second.msg_id
    assert phone.switches == 2 and responder.executions[second.msg_id] == 1
    starts = [r for r in phone.control_log if is_vendor_request(r[0]) and r[1] == AoaRequest.START]
    assert len(starts) == 2


def test_the_pos_app_restarts_and_the_bridge_reconnects_without_a_new_switch(world: World) -> None:
    responder = world.responder()
    endpoint = world.endpoint("aoa", responder, serial_no="AP-0002")
    wire = endpoint.wire
    bridge = world.bridge([endpoint.bridge_url], usb_backend=wire.backend)  # type: ignore[attr-defined]  # a USB endpoint's wire carries its virtual bus (backend)
    wait_until(lambda: bridge.relay.attached("D1"), what="attached")

    wire.restart_app()  # type: ignore[attr-defined]  # an aoa endpoint's wire is an AndroidUsbWire
    wait_until(lambda: wire.app.sessions == 2, what="the restarted app opened the accessory again")  # type: ignore[attr-defined]  # an aoa endpoint's wire is an AndroidUsbWire
    envelope = world.seal("+8.00", "MZ-AOA-3")
    # While the bridge has not yet noticed (its keepalive goes unanswered), HIS may get 503; the same
    # envelope posted again is idempotent, as the interface promises.
    wait_until(lambda: requests.post(bridge.url + "/v1/instructions?wait=0", data=envelope.to_bytes(),
                                     timeout=10).status_code in (200, 202), timeout=20, what="the instruction accepted")
    assert result_of(world, bridge, envelope.msg_id).envelope.reply_to == envelope.msg_id
    assert wire.device.switches == 1 and wire.app.sessions == 2  # type: ignore[attr-defined]  # an aoa endpoint's wire is an AndroidUsbWire


def test_a_pos_without_accessory_support_keeps_the_port_down_with_a_reason(world: World) -> None:
    old = VirtualAndroidDevice(serial_no="AP-OLD", aoa_version=0)
    endpoint = world.endpoint("aoa", world.responder(), android=old)
    bridge = world.bridge([endpoint.bridge_url], usb_backend=endpoint.wire.backend)  # type: ignore[attr-defined]  # a USB endpoint's wire carries its virtual bus (backend)
    wait_until(lambda: "accessory support" in str(bridge.health()["devices"][0].get("last_error", "")),
               what="the reason in /v1/health")
    assert bridge.health()["devices"][0]["link"] != "up" and old.mode is AndroidMode.PHONE
