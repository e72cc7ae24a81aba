"""The virtual device as a product: provisioning and first boot, identity on every wire, what a
maintenance host may see, reconfiguration by flashing, power listeners (the UI seam), pacing."""

from __future__ import annotations

import terminal
from posflash.host_key import load_host_key
from terminal.identity import load_identity

import os
import socket
import threading
import tty
from pathlib import Path
from typing import Iterator

import pytest
import usb.core
import usb.util

from bridge import hisclient
from posflash import flasher
from firmware_sim import demo_setup
from firmware_sim.device import DeviceOptions, LinkKind, Power, VirtualDevice
from firmware_sim.faults import parse_fault
from firmware_sim.sandbox.launcher import SandboxProcess
from firmware_sim.simerrors import SimCode, SimError
from protocol.amount import parse_amount
from protocol.crypto import KeyRing
from protocol.messages import PayStatus
from tests.e2e.world import SimWorld, new_order, sandbox_fixture, wait_until, world_fixture


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    yield from sandbox_fixture(tmp_path_factory)


@pytest.fixture
def world(tmp_path: Path, sandbox: SandboxProcess) -> Iterator[SimWorld]:
    yield from world_fixture(tmp_path, sandbox)


def test_storage_that_holds_no_device_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SimError) as refused:
        VirtualDevice(DeviceOptions(tmp_path))
    assert refused.value.code is SimCode.STORAGE and "pos-sim init" in refused.value.message


def test_a_new_device_is_in_recovery_and_refuses_instructions_until_configured(world: SimWorld) -> None:
    directory, provisioned = world.provision()
    device = world.start_device(directory, LinkKind.TCP)
    assert device.power is Power.RECOVERY and device.service is None
    assert "recovery mode" in str(device.status()["problem"])
    with pytest.raises(SimError) as dark:
        device.scan("134567890123456789")
    assert dark.value.code is SimCode.NO_APPLICATION
    bridge = world.start_bridge(device)
    assert device.wait_link_up(10)
    health = bridge.health()["devices"][0]
    assert (health["device_id"], health["firmware"]) == (provisioned.device_id, "pos-sim 1.0 recovery")
    client = hisclient.ClientConfig(bridge.url, world.key, KeyRing([world.key]), "T0001", {provisioned.device_id: provisioned.public_key})
    envelope = hisclient.seal(client, new_order(), "+1.00", hisclient.new_msg_id("T0001"))
    # Without a configuration nothing can be sealed or signed: the instruction stays unfinished, and says why.
    outcome = hisclient.submit(client, envelope, "x", 2, amount=parse_amount("+1.00"))
    assert outcome.result is None and outcome.state == "queued"
    assert outcome.last_event is not None and outcome.last_event["code"] == "device_unavailable"
    assert "recovery mode" in str(outcome.last_event["message"])


def test_flashing_a_configuration_boots_it_and_confirms_its_health(world: SimWorld) -> None:
    device, provisioned = world.configured_device(LinkKind.PTY)
    status = device.status()
    assert status["power"] == "on" and status["problem"] is None
    assert status["boot"]["slot"] == "a" and status["boot"]["config_version"] == "cfg-1"
    assert "confirmed healthy" in status["boot"]["message"]
    assert device.bridge_url == f"serial:{Path(status['storage']).resolve() / 'tty'}"
    with flasher.DeviceConnection(device.bridge_url, public_key_for={provisioned.device_id: provisioned.public_key}.get,
                                  host_key_seed=load_host_key(world.hosts.maintenance).seed) as conn:
        conn.connect()
        boot = flasher.read_status(conn)
    assert (boot["running"], boot["active"], boot["slots"]["a"]["state"]) == ("a", "a", "confirmed")  # type: ignore[index]  # INFO's boot state, read from JSON (typed object)
    assert device.service is not None and device.service.config.device.device_id == provisioned.device_id


def test_the_usb_device_shows_its_identity_to_pyusb(world: SimWorld) -> None:
    directory, provisioned = world.provision()
    device = world.start_device(directory, LinkKind.USB)
    found = usb.core.find(idVendor=0x1209, idProduct=0x7D01, backend=device.usb_backend)
    assert found is not None
    assert found.serial_number == provisioned.serial_no and "Smart POS" in found.product
    assert device.bridge_url == f"usb://1209:7D01/{provisioned.serial_no}"
    usb.util.dispose_resources(found)


def test_a_maintenance_host_never_takes_a_result_meant_for_his(world: SimWorld) -> None:
    rig = world.rig(LinkKind.TCP)
    code, order = rig.issue("WECHAT"), new_order()
    pending = rig.pay(order, "+6.60", wait_s=2)
    rig.screen_is("awaiting_scan")
    rig.device.inject(parse_fault({"fault": "unplug"}))
    rig.device.scan(code)
    wait_until(lambda: rig.device.history(order_no=order), what="the payment to finish")
    assert pending.outcome().result is None  # HIS gave up waiting: the cable is out
    rig.bridge.stop()  # the field engineer stops the bridge service and plugs in a laptop
    rig.device.inject(parse_fault({"fault": "replug"}))
    provisioned = load_identity(Path(rig.device.status()["storage"]))
    with flasher.DeviceConnection(rig.device.bridge_url, public_key_for={provisioned.device_id: provisioned.public_key}.get,
                                  host_key_seed=load_host_key(world.hosts.maintenance).seed) as conn:
        conn.connect()
        assert flasher.read_status(conn)["running"] == "a"
        assert rig.device.status()["link"]["host"] == "maintenance"
    assert not rig.device.history(order_no=order)[0].delivered  # pos-flash acknowledged nothing
    bridge = world.start_bridge(rig.device)  # the same journal: the bridge service is back
    client = hisclient.ClientConfig(bridge.url, rig.client.key, rig.client.keys, "T0001", rig.client.device_keys)
    result = hisclient.query(client, pending.msg_id, 20, order_no=order).result
    assert result is not None and result.pay_status is PayStatus.SUCCESS
    assert rig.balance_fen(code) == 100_00 - 6_60


def test_reconfiguring_by_flash_keeps_the_journal(world: SimWorld) -> None:
    rig = world.rig(LinkKind.TCP)
    code, order = rig.issue("ALIPAY"), new_order()
    pending = rig.pay(order, "+8.00")
    rig.screen_is("awaiting_scan")
    rig.device.scan(code)
    assert pending.result().pay_status is PayStatus.SUCCESS
    rig.bridge.stop()
    provisioned = load_identity(Path(rig.device.status()["storage"]))
    outcome = demo_setup.flash(rig.device.bridge_url, world.configuration(provisioned, version=2), world.records,
                               host_key=world.hosts.maintenance)
    assert outcome.confirmed and outcome.slot == "b"
    wait_until(lambda: rig.device.power is Power.ON, what="the device to run cfg-2")
    assert rig.device.status()["boot"]["config_version"] == "cfg-2"
    (entry,) = rig.device.history(order_no=order)
    assert entry.pay_status is PayStatus.SUCCESS and entry.delivered


def test_power_listeners_hear_each_new_service(world: SimWorld) -> None:
    device, _ = world.configured_device(LinkKind.TCP)
    heard: list[object] = []
    remove = device.add_power_listener(heard.append)
    first = device.service
    device.inject(parse_fault({"fault": "power_cut"}))
    device.inject(parse_fault({"fault": "power_on"}))
    remove()
    device.inject(parse_fault({"fault": "power_cut"}))
    assert heard[:2] == [first, None] and heard[2] is not None and heard[2] is not first and len(heard) == 3


def test_a_paced_link_at_115200_baud_carries_a_payment(world: SimWorld) -> None:
    rig = world.rig(LinkKind.TCP, baud=115_200)
    code = rig.issue("WECHAT")
    pending = rig.pay(new_order(), "+12.50")
    rig.screen_is("awaiting_scan")
    rig.device.scan(code)
    assert pending.result().pay_status is PayStatus.SUCCESS
    assert rig.device.status()["link"]["baud"] == 115_200


def test_pos_app_serves_its_service_through_the_device_host(world: SimWorld, tmp_path: Path) -> None:
    from terminal.link.host import DeviceHostError, attach_service
    from protocol.image import PartKind, parse_image
    from terminal.config import parse_config
    from terminal.factory import open_terminal

    directory, provisioned = world.provision()
    from protocol.sealed_config import open_config

    sealed = parse_image(world.configuration(provisioned)).part(PartKind.CONFIG)
    assert sealed is not None and provisioned.config_key is not None  # a configuration image, for a device that has a config key
    config = parse_config(open_config(sealed, device_id=provisioned.device_id, device_private=provisioned.config_key))
    service = open_terminal(config, tmp_path / "journal.db", device_key_seed=provisioned.device_key_seed)
    service.start()
    with socket.socket() as probe:  # a free port for the device to listen on (the bridge must name it)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DeviceHostError) as unknown:
        attach_service(service, f"socket://127.0.0.1:{port}")
    assert "POS_DEVICE_DIR" in str(unknown.value)
    detach = attach_service(service, f"socket://127.0.0.1:{port}", device_dir=directory)
    try:
        bridge = world.start_bridge_for(f"socket://127.0.0.1:{port}", provisioned.device_id)
        client = hisclient.ClientConfig(bridge.url, world.key, KeyRing([world.key]), "T0001", {provisioned.device_id: provisioned.public_key})
        code, order = str(world.sandbox.issue_code("WECHAT", "10.00", "success")["code"]), new_order()
        envelope = hisclient.seal(client, order, "+1.50", hisclient.new_msg_id("T0001"))
        wait_until(lambda: bridge.health()["status"] == "ok", what="pos-app's link")
        box: dict[str, object] = {}
        waiter = threading.Thread(target=lambda: box.update(o=hisclient.submit(client, envelope, order, 20, amount=parse_amount("+1.50"))))
        waiter.start()
        wait_until(lambda: service.view().can_scan, what="the collection on screen")
        service.scan(code)
        waiter.join(20)
        assert box["o"].result.pay_status is PayStatus.SUCCESS  # type: ignore[attr-defined]  # the box holds the HIS thread's Outcome (typed object)
        # A real POS announces the POS app's own version, never the simulator's.
        assert bridge.health()["devices"][0]["firmware"] == f"pos-app {terminal.__version__}"
    finally:
        detach()
        service.close()
        service.journal.close()


def test_serial_wire_reopens_after_the_host_side_vanishes() -> None:
    from terminal.link.wire import WireReset
    from terminal.link.serial_wire import SerialWire

    master, slave = os.openpty()
    tty.setraw(slave)
    wire = SerialWire(os.ttyname(slave))
    try:
        with pytest.raises(WireReset):  # opening the port starts a session
            wire.read(100, 0.05)
        os.write(master, b"hello")
        assert wait_until(lambda: wire.read(100, 0.05), what="bytes from the host") == b"hello"
        wire.write(b"world")
        assert os.read(master, 100) == b"world"
        wire.unplug()
        assert wire.read(100, 0.05) == b""
        wire.replug()
        with pytest.raises(WireReset):
            wire.read(100, 0.05)
    finally:
        wire.close()
        os.close(master)
        os.close(slave)
