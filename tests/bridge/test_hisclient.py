"""The HIS reference client against a real bridge: pay, refund, status, step 6 checks, demo file."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

import pytest
import requests

from protocol import signing
from protocol.amount import parse_amount
from protocol.envelope import seal_result
from protocol.messages import PayChannel, PayStatus, Result
from protocol.registry import DeviceRecord, format_device_csv

from bridge import hisclient
from bridge.registries import export_devices_for_his
from firmware_sim.responder import ResponderMode
from tests.bridge.conftest import World, wait_until


@pytest.fixture
def his(world: World):
    responder = world.responder()
    endpoint = world.endpoint("tcp", responder)
    bridge = world.bridge([endpoint.bridge_url])
    wait_until(lambda: bridge.relay.attached("D1"))
    export_devices_for_his(world.dir / "devices.csv", world.dir / "his-devices.csv")
    args = ["--bridge", bridge.url, "--key-file", str(world.dir / "keys.json"), "--devices",
            str(world.dir / "his-devices.csv"), "--terminal", "T1"]
    return world, bridge, responder, args


def test_pay_refund_and_status(his, capsys) -> None:
    world, bridge, responder, args = his
    assert hisclient.main([*args, "pay", "+12.50", "--order", "MZ20261122000123"]) == 0
    out = capsys.readouterr().out
    assert "verified result for HIS-T1-" in out and "SUCCESS WECHAT +12.50" in out and "(in our device registry; signed with its key)" in out
    assert hisclient.main([*args, "--json", "refund", "-5.00", "--order", "MZ20261122000123"]) == 0
    refund = json.loads(capsys.readouterr().out)
    assert refund["verified"] is True and refund["result"]["pay_status"] == "REFUNDED"
    assert refund["result"]["amount"] == "-5.00"
    assert hisclient.main([*args, "--json", "status", refund["msg_id"]]) == 0
    assert json.loads(capsys.readouterr().out)["result"] == refund["result"]
    assert len(responder.executions) == 2


def test_unfinished_payment_exits_3_and_tells_how_to_ask_again(his, capsys) -> None:
    world, bridge, responder, args = his
    responder.mode = ResponderMode.SILENT
    assert hisclient.main([*args, "pay", "+1.00", "--order", "MZ2", "--wait", "1"]) == 3
    out = capsys.readouterr().out
    assert "not finished yet (state awaiting_scan, expires " in out
    # The hint repeats the options that chose bridge, keys and registry (issue 15, finding 9: --demo was lost).
    hint = out.split("ask again:", 1)[1].split()
    assert hint[: len(args) + 1] == ["his-client", *args] and hint[len(args) + 1] == "status"
    assert hint[len(args) + 2].startswith("HIS-T1-")
    assert hisclient.main(hint[1:]) == 3  # the hint works as printed


def test_status_and_cancel_last_with_demo(his, capsys, tmp_path) -> None:
    world, bridge, responder, args = his
    responder.mode = ResponderMode.SILENT
    demo = _demo_file(world, bridge, tmp_path)
    assert hisclient.main(["--demo", str(demo), "pay", "+3.00", "--order", "MZ7", "--wait", "0", "--expires-in", "120"]) == 3
    out = capsys.readouterr().out
    assert f"his-client --demo {demo} status HIS-" in out
    assert hisclient.main(["--demo", str(demo), "--json", "status", "--last"]) == 3
    pending = json.loads(capsys.readouterr().out)
    assert pending["state"] in ("queued", "awaiting_scan") and pending["expires_at"] - pending["since"] <= 121
    assert hisclient.main(["--demo", str(demo), "--json", "cancel", "--last"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["verified"] and (done["result"]["pay_status"], done["result"]["error_code"]) == ("CLOSED", "withdrawn")


def test_step_6_refuses_a_device_not_in_our_registry(his, capsys) -> None:
    world, bridge, _, args = his
    other = DeviceRecord("D-OTHER", "P8", "SN", signing.public_key(os.urandom(32)))
    (world.dir / "his-devices.csv").write_text(format_device_csv([other], for_his=True))
    assert hisclient.main([*args, "pay", "+1.00", "--order", "MZ3"]) == 1
    assert "auth_failed: result rejected in step 6: device D1 is not in the device registry" in capsys.readouterr().err


def test_a_version_1_registry_without_public_keys_is_refused_with_what_to_ask_for(his, capsys) -> None:
    world, bridge, _, args = his
    (world.dir / "his-devices.csv").write_text("device_id,model,serial_no\nD1,SIM-POS,SN-D1\n")
    assert hisclient.main([*args, "pay", "+1.00", "--order", "MZ3"]) == 1
    assert "no public_key for D1" in capsys.readouterr().err


def test_step_6_checks_reply_to_and_order(his) -> None:
    world, bridge, _, _ = his
    envelope = world.seal("+2.00", "MZ4")
    body = requests.post(bridge.url + "/v1/instructions?wait=10", data=envelope.to_bytes(), timeout=30).content
    config = hisclient.ClientConfig(bridge.url, world.key, world.ring, "T1", world.public_keys())
    assert hisclient.verify_result(config, body, envelope.msg_id, envelope.ts, "MZ4", parse_amount("+2.00")).order_no == "MZ4"
    # Finding 7: the amount is part of step 6.
    with pytest.raises(hisclient.ClientError, match=r"result is for amount \+2.00, we sent \+3.00"):
        hisclient.verify_result(config, body, envelope.msg_id, envelope.ts, "MZ4", parse_amount("+3.00"))
    with pytest.raises(hisclient.ClientError, match="we asked about"):
        hisclient.verify_result(config, body, "SOME-OTHER-MSG", envelope.ts)
    with pytest.raises(hisclient.ClientError, match="we sent MZ5"):
        hisclient.verify_result(config, body, envelope.msg_id, envelope.ts, "MZ5")
    tampered = json.loads(body)
    tampered["device_id"] = "D2"
    with pytest.raises(hisclient.ClientError) as error:
        hisclient.verify_result(config, json.dumps(tampered).encode(), envelope.msg_id)
    assert error.value.code == "auth_failed"


def test_bridge_refusals_and_usage_errors(his, capsys) -> None:
    world, bridge, _, args = his
    assert hisclient.main([*args[:-1], "T3", "pay", "+1.00", "--order", "MZ6"]) == 1
    assert "device_unavailable" in capsys.readouterr().err
    assert hisclient.main([*args, "pay", "12.50", "--order", "MZ6"]) == 1
    assert "starting with '+'" in capsys.readouterr().err
    assert hisclient.main([*args, "refund", "-5.5", "--order", "MZ6"]) == 1
    assert "two decimals are required" in capsys.readouterr().err


def _demo_file(world: World, bridge, tmp_path: Path) -> Path:
    demo = {"bridge_url": bridge.url, "suite": world.key.suite, "kid": world.key.kid, "key_hex": world.key.secret.hex(),
            "terminal_id": "T1", "device_id": "D1", "device_registry": str(world.dir / "his-devices.csv")}
    (tmp_path / "demo.json").write_text(json.dumps(demo))
    return tmp_path / "demo.json"


def test_demo_file(his, tmp_path: Path, capsys) -> None:
    world, bridge, _, _ = his
    assert hisclient.main(["--demo", str(_demo_file(world, bridge, tmp_path)), "pay", "+9.99", "--order", "MZ-DEMO"]) == 0
    assert "SUCCESS" in capsys.readouterr().out


def test_new_msg_ids_are_unique_and_valid() -> None:
    from protocol.ids import is_valid_id

    ids = {hisclient.new_msg_id("T" * 64) for _ in range(1000)}
    assert len(ids) == 1000 and all(is_valid_id(i) for i in ids)


def test_options_work_before_and_after_the_command(his, capsys) -> None:
    world, bridge, _, args = his
    assert hisclient.main(["pay", "+3.00", "--order", "MZ-AFTER", *args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["result"]["order_no"] == "MZ-AFTER"


def test_finding_1_a_result_forged_with_the_shared_key_fails_step_6(his) -> None:
    """A holder of the shared key seals a SUCCESS for our instruction: every version-1 check passes
    (tag, reply_to, device_id in the registry, order, amount); the device's `sig` does not."""
    world, bridge, _, _ = his
    envelope = world.seal("+88.00", "MZ-FORGED")
    config = hisclient.ClientConfig(bridge.url, world.key, world.ring, "T1", world.public_keys())
    result = Result("D1", "MZ-FORGED", "4200000000088", PayStatus.SUCCESS, PayChannel.WECHAT, parse_amount("+88.00"),
                    int(time.time()))
    for seed in (None, os.urandom(32), world.seeds["D2"]):
        forged = seal_result(result, key=world.key, msg_id=f"R-{os.urandom(4).hex()}", reply_to=envelope.msg_id,
                             ts=int(time.time()), nonce=os.urandom(12), device_key_seed=seed)
        with pytest.raises(hisclient.ClientError) as error:
            hisclient.verify_result(config, forged.to_bytes(), envelope.msg_id, envelope.ts, "MZ-FORGED", parse_amount("+88.00"))
        assert error.value.code == "auth_failed" and "sig" in error.value.message
    genuine = seal_result(result, key=world.key, msg_id="R-GENUINE", reply_to=envelope.msg_id, ts=int(time.time()),
                          nonce=os.urandom(12), device_key_seed=world.seeds["D1"])
    assert hisclient.verify_result(config, genuine.to_bytes(), envelope.msg_id, envelope.ts, "MZ-FORGED",
                                   parse_amount("+88.00")) == result


def test_a_result_failing_step_6_is_not_booked_and_asked_for_again(his, capsys) -> None:
    """docs/his-interface.md §10: book nothing, alert, ask again with GET (the bridge serves what it
    verified). The answer is altered on the way by a real HTTP proxy (the conformance kit's)."""
    from firmware_sim.conformance.proxy import ConformanceProxy

    world, bridge, responder, args = his
    msg_ids = iter(["HIS-T1-STEP6-ONCE", "HIS-T1-STEP6-ALWAYS"])
    proxy = ConformanceProxy(bridge.url, msg_id_of=lambda method, path, body: next_id(path, body)).start()

    def next_id(path: str, body: bytes) -> str | None:
        if path.startswith("/v1/results/"):
            return path.rsplit("/", 1)[1]
        return json.loads(body)["msg_id"] if body else None

    def flip(body: bytes) -> bytes:
        obj = json.loads(body)
        raw = bytearray(base64.b64decode(obj["ct"]))
        raw[0] ^= 1
        obj["ct"] = base64.b64encode(bytes(raw)).decode()
        return json.dumps(obj).encode()

    try:
        proxied = [a if a != bridge.url else proxy.url for a in args]
        once = next(msg_ids)
        proxy.arm_tamper(once, flip)  # the first answer only
        assert hisclient.main([*proxied, "pay", "+1.00", "--order", "MZ-S6", "--msg-id", once]) == 0
        out, err = capsys.readouterr()
        assert "ALERT: the result for HIS-T1-STEP6-ONCE failed step 6 (auth_failed" in err and "SUCCESS" in out
        asked = [x for x in proxy.recorder.exchanges if x.method == "GET" and x.path == f"/v1/results/{once}" and x.status == 200]
        assert asked, "it asked again with GET"
        always = next(msg_ids)

        def flip_every_time(body: bytes) -> bytes:
            proxy.arm_tamper(always, flip_every_time)  # one-shot in the proxy: arm it again
            return flip(body)

        proxy.arm_tamper(always, flip_every_time)
        assert hisclient.main([*proxied, "pay", "+2.00", "--order", "MZ-S7", "--msg-id", always]) == 1
        err = capsys.readouterr().err
        gets = [x for x in proxy.recorder.exchanges if x.method == "GET" and x.path == f"/v1/results/{always}" and x.status == 200]
        assert len(gets) == hisclient.STEP6_ASK_AGAIN
        assert "step6_failed" in err and "do not book it" in err and "new msg_id" in err
    finally:
        proxy.stop()
