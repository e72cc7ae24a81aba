"""The screens of a POS that cannot simply take a payment, on the real app around real terminal
services, driven by fingers (touches through the window) and the wedge scanner. Run in its own
process by test_problem_screens.py:

    SDL_VIDEODRIVER=offscreen python -m tests.terminal.ui.problems_run --work DIR --report FILE

1. the supervisor PIN locks out; the refund PIN pad offers the admin, whose PIN clears the lockout
   (TerminalService.reset_pin_lockout) and brings the supervisor back to the pad;
2. the provider disabled the device: a real HTTP gateway on 127.0.0.1 answers 403 device_disabled,
   the payment ends, and the home screen says the device is disabled instead of "waiting";
3. the gateway stops listening: the watch's TCP probe finds nothing, the screen says so;
4. a journal that lost its content starts locked (issue 14): the screen says payments are paused;
5. an Alipay payment whose replies cannot be verified goes to a person (issue 17): the home screen
   counts it, the count opens the list, and "check again" settles it once the key is fixed.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from terminal.ui import display

display.prepare_kivy(kivy_home=tempfile.mkdtemp(prefix="kivy-home-"), offscreen=True, clock="default")

from terminal.ui.app import PORTRAIT, build_app, configure_window  # noqa: E402

configure_window(PORTRAIT)

from Crypto.PublicKey import RSA  # noqa: E402

from firmware_sim.sandbox.launcher import SandboxProcess  # noqa: E402
from gateway.channels import build_clients, settings_from_sandbox  # noqa: E402
from protocol.messages import PayChannel, PayStatus  # noqa: E402
from terminal.config import GatewaySettings  # noqa: E402
from terminal.gateway_client import GatewayChannelClient, GatewayConnection  # noqa: E402
from terminal.gateway_watch import GatewayState  # noqa: E402
from terminal.machine import Limits  # noqa: E402
from terminal.pin import hash_pin, parse_pin_hash  # noqa: E402
from terminal.ui import finger  # noqa: E402
from terminal.ui import offscreen as off  # noqa: E402
from terminal.ui.fonts import prepare_fonts  # noqa: E402
from tests.terminal.helpers import PIN, Bridge, His, make_config, open_service  # noqa: E402
from tests.terminal.test_service import seed_collection  # noqa: E402
from tests.terminal.ui.app_driver import FAST, ScreenDriver, check, main_with_report  # noqa: E402

ADMIN_PIN = "97531864"
ADMIN_HASH = hash_pin(ADMIN_PIN, salt=b"admin-salt-16byt")


class DisabledGateway:
    """A gateway on 127.0.0.1 whose operator disabled this device: every request gets what
    gateway/service.py answers then (403, device_disabled)."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.dumps({"error": {"code": "device_disabled",
                                             "message": "device has been disabled by the operator"}}).encode()
                self.send_response(403)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def scenario(app, gateway: DisabledGateway, sandbox: SandboxProcess, work: Path, steps: list[str],
                   services: list) -> None:
    vm, service = app.vm, app.backend.service
    bridge, his = Bridge(service), His()
    await off.until(lambda: app.root is not None, what="the app")
    await off.frames(2)

    ui = ScreenDriver(app, timeout=15.0)
    screen, on, shows, can_press = ui.screen, ui.on, ui.shows, ui.can_press

    async def type_pin(pin: str) -> None:
        for digit in pin:
            await finger.press(screen(), digit)
        await finger.press(screen(), "确认")

    # 1. the supervisor PIN locks out; the admin clears the lockout on the device
    seed_collection(service.journal, "MZ9", 12_50)
    service.submit_instruction(his.envelope("MZ9", "-5.00", expires_at=int(time.time()) + 86_000))
    await on("instruction")
    await finger.press(screen(), "主管确认退款")
    await on("refund_pin")
    check(not shows("管理员解除锁定"), "no admin button before a lockout")
    await type_pin("111111")
    await off.until(lambda: shows("还可再试 1 次"), what="one try left")
    await type_pin("222222")
    await off.until(lambda: shows("管理员解除锁定"), what="the admin's button once the PIN is locked out")
    check(shows("密码错误次数过多"), "the pad says it is locked out")
    check(service.view().pin_locked_until is not None, "the service holds the lockout")
    await finger.press(screen(), "管理员解除锁定")
    await on("admin_pin")
    check(shows("请输入管理员密码以解除锁定"), "the admin pad says what it is for")
    await type_pin(ADMIN_PIN)
    await on("refund_pin")
    await off.until(lambda: shows("已解除锁定"), what="the supervisor is told the lockout is cleared")
    check(service.view().pin_locked_until is None and service.view().pin_tries_left == 2,
          f"the service cleared the lockout ({service.view().pin_tries_left} tries)")
    check(not shows("管理员解除锁定"), "the admin's button went with the lockout")
    await finger.press(screen(), "拒绝退款")
    await on("result")
    await finger.press(screen(), "完成")
    await on("home")
    steps.append("PIN lockout cleared by the admin")

    # 2. the provider disabled this device: the payment cannot start, the screen says why
    order = f"MZ{int(time.time() * 1000)}"
    msg_id = his.envelope(order, "+5.00").msg_id
    service.submit_instruction(his.envelope(order, "+5.00", msg_id=msg_id))
    await on("instruction")
    off.type_wedge("134567890123456789")  # a WeChat payment code, read by the scanner
    await off.until(lambda: app.backend.watch.state is GatewayState.DISABLED, what="the gateway's 403 device_disabled")
    await off.until(lambda: service.view().screen.value == "declined", what="the payment refused")
    # The service decided; the screen follows on the app's next frames (the view model hears of it
    # on Kivy's clock): wait until the cashier can see the button, as a cashier would.
    await off.until(lambda: can_press("取消收款"), what="the cancel button of the refused payment")
    await finger.press(screen(), "取消收款")
    await on("result")
    check(bridge.result(msg_id, timeout=5).pay_status is PayStatus.FAILED, "HIS got FAILED: nothing was charged")
    await finger.press(screen(), "完成")
    await on("problem")
    check(shows("本机已被支付服务商停用") and shows("D-"), "the disabled device says so, with its number")
    await finger.press(screen(), "今日记录")
    await on("history")
    check(shows(order), "today's list still opens")
    await finger.press(screen(), "返回")
    await on("problem")
    steps.append("device disabled by the gateway")

    # 3. the gateway is gone: the probe (what its thread runs every 30 s) finds no listener
    gateway.stop()
    check(app.backend.watch.probe_once() is GatewayState.UNREACHABLE, "the probe finds no gateway")
    await off.until(lambda: shows("无法连接支付网关"), what="the unreachable gateway on screen")
    check(vm.screen == "problem", "still the problem screen")
    steps.append("gateway unreachable")

    # 4. a journal that lost its content starts locked: payments are paused, and the screen says so
    broken = work / "broken.db"
    first = open_service(broken)
    seed_collection(first.journal, "MZ-PAID", 12_50)
    first.close()
    first.journal.close()
    broken.write_bytes(b"")
    Path(str(broken) + "-wal").unlink(missing_ok=True)
    locked = open_service(broken)
    services.append(locked)
    app.rebind(locked)
    await on("problem")
    check(shows("交易记录损坏") and shows("已收款的记录不会丢失"), "the locked journal on screen")
    steps.append("journal locked")

    # 5. a payment whose replies cannot be verified goes to a person; the home screen counts it
    app_key = Path(str(settings_from_sandbox(sandbox.credentials_path)["alipay"]["private_key_pem"])).read_text()
    wrong = RSA.import_key(app_key).public_key().export_key().decode()
    settings = settings_from_sandbox(sandbox.credentials_path, wechat=FAST, alipay={**FAST, "alipay_public_key_pem": wrong})
    parked = open_service(work / "parked.db", make_config(), build_clients(settings),
                          limits=Limits(unverified=2, reverses=3, refund_queries=6, refund_calls=2, abnormal=2))
    services.append(parked)
    bridge, his = Bridge(parked), His()
    app.rebind(parked)
    await on("home")
    check(vm.needs_person_count == 0 and not shows("待人工处理"), "no count while nothing needs a person")
    order = f"MZ{int(time.time() * 1000)}"
    msg_id = his.envelope(order, "+5.00").msg_id
    parked.submit_instruction(his.envelope(order, "+5.00", msg_id=msg_id))
    await on("instruction")
    code = str(sandbox.issue_code(PayChannel.ALIPAY.value, "100.00")["code"])
    off.type_wedge(code)
    await off.until(lambda: vm.needs_person_count == 1, 20, "the payment handed to a person")
    await on("home")
    check(shows("1 笔交易待人工处理"), "the home screen counts the open case")
    await finger.press(screen(), "1 笔交易待人工处理")
    await on("needs_person")
    await off.until(lambda: shows(order), what="the case in the list")
    check(shows("公钥"), "the list says what to check")
    parked.clients.update(build_clients(settings_from_sandbox(sandbox.credentials_path, alipay=FAST)))  # the key is fixed
    await finger.press(screen(), "已处理，重新查询")
    await on("result", 20)
    check(shows("收款成功"), "the recheck settled it: paid")
    check(bridge.result(msg_id, timeout=5).pay_status is PayStatus.SUCCESS, "HIS got SUCCESS")
    await finger.press(screen(), "完成")
    await on("home")
    check(vm.needs_person_count == 0 and not shows("待人工处理"), "the count went with the case")
    steps.append("needs a person: counted, listed, rechecked")


def main(argv: list[str] | None = None) -> int:
    return main_with_report(__doc__, argv, run)


def run(work: Path, steps: list[str]) -> str | None:
    gateway = DisabledGateway()
    sandbox = SandboxProcess(str(work / "sandbox"))
    sandbox.start()
    services: list = []
    try:
        config = dataclasses.replace(make_config(max_wrong_tries=2, lockout_s=600), admin_pin_hash=parse_pin_hash(ADMIN_HASH),
                                     gateway=GatewaySettings(gateway.url))
        connection = GatewayConnection(gateway.url, device_id=config.device.device_id, seed=bytes(32))
        clients = {c: GatewayChannelClient(connection, c, terminal_id="T0001") for c in (PayChannel.WECHAT, PayChannel.ALIPAY)}
        service = open_service(work / "journal.db", config, clients)
        services.append(service)
        # The TCP probe's thread stays out (probe_network=False): step 3 runs its one probe itself.
        app = build_app(service, fonts=prepare_fonts(), camera_index=None, probe_network=False, receipts_dir=work / "receipts")
        return off.run_app(app, lambda a: scenario(a, gateway, sandbox, work, steps, services))
    finally:
        for service in services:
            service.close()
        sandbox.stop()


if __name__ == "__main__":
    sys.exit(main())
