"""The cashier's flows on the real app, offscreen, around a real TerminalService talking to the
channel sandbox over HTTP: instruction -> amount screen; wedge scan -> paying -> result; receipt
printed by the real command of the configuration's printer.command; refund refused with a wrong PIN, then done with the right one; cancel;
slow typing is not a scan; a refused code is explained. Run in its own process by test_flow.py:

    SDL_VIDEODRIVER=offscreen python -m tests.terminal.ui.flow_run --work DIR --report FILE
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
import tempfile
import time
from pathlib import Path

from terminal.ui import display

display.prepare_kivy(kivy_home=tempfile.mkdtemp(prefix="kivy-home-"), offscreen=True, clock="default")

from terminal.ui.app import PORTRAIT, build_app, configure_window  # noqa: E402

configure_window(PORTRAIT)

from firmware_sim.sandbox.launcher import SandboxProcess  # noqa: E402
from protocol.messages import PayChannel, PayStatus  # noqa: E402
from gateway.channels import build_clients, settings_from_sandbox  # noqa: E402
from terminal.config import parse_print_command  # noqa: E402
from terminal.ui import finger  # noqa: E402
from terminal.ui import offscreen as off  # noqa: E402
from terminal.ui.fonts import prepare_fonts  # noqa: E402
from tests.terminal.helpers import PIN, Bridge, His, make_config, open_service  # noqa: E402
from tests.terminal.ui.app_driver import FAST, ScreenDriver, check, main_with_report  # noqa: E402

async def scenario(app, sandbox: SandboxProcess, bridge: Bridge, his: His, work: Path, steps: list[str],
                   work_services: list) -> None:
    vm, service = app.vm, bridge.service
    await off.until(lambda: app.root is not None, what="the app")
    await off.frames(2)

    ui = ScreenDriver(app, timeout=10.0, detail=lambda: service.view().message)
    screen, on, shows = ui.screen, ui.on, ui.shows

    # 1. a collection arrives: the amount screen shows it, large, as a collection
    order = f"MZ{int(time.time() * 1000)}"
    msg_id = his.envelope(order, "+12.50").msg_id
    envelope = his.envelope(order, "+12.50", msg_id=msg_id)
    service.submit_instruction(envelope)
    await on("instruction")
    check(shows("¥12.50") and shows("收款") and shows(order), "the instruction screen shows ¥12.50, 收款 and the order number")
    amount = [w for w in off.find_text(screen(), "¥12.50")][0]
    check(amount.font_size >= app.u * 10, f"the amount is very large (font {amount.font_size:.0f} px)")
    check(not off.layout_problems(screen()), f"layout: {off.layout_problems(screen())}")
    steps.append("instruction shown")

    # 2. a refused code is explained and the order stays open
    off.type_wedge("123456789012")
    await off.until(lambda: shows("这不是微信或支付宝付款码"), what="the refusal in plain words")
    check(vm.screen == "instruction", "still on the instruction after a refused code")
    # 3. slow keys (a person typing) are not a scan
    code = str(sandbox.issue_code(PayChannel.WECHAT.value, "100.00", "userpaying:2")["code"])  # 2 s on the paying screen, even on a loaded machine
    off.type_wedge(code, gap_s=0.08)
    await off.frames(5)
    check(vm.screen == "instruction" and vm.worker.busy == 0, "slow typing was not sent as a payment code")
    steps.append("refused code and slow typing")

    # 4. the scanner's burst pays: paying (countdown) -> result
    off.type_wedge(code)
    await on("paying")
    check(shows("请患者在手机上确认支付") or shows("正在支付"), "the paying screen says what is happening")
    await on("result")
    check(shows("收款成功"), "the result says the payment was received")
    result = bridge.result(msg_id, timeout=5)
    check(result.pay_status is PayStatus.SUCCESS, f"HIS got {result.pay_status}")
    check(int(sandbox.account(code)["balance_fen"]) == 100_00 - 12_50, "the patient paid exactly 12.50")
    steps.append("scan, paying, result")

    # 5. the receipt is rendered and sent to the configured print command
    await finger.press(screen(), "打印小票")
    from terminal.texts import STRINGS

    await off.until(lambda: vm.print_message not in (None, STRINGS["result.printing"]), what="the print to finish")
    check(vm.print_message == STRINGS["result.printed"], f"the screen says it printed ({vm.print_message})")
    printed = work / "printed.png"
    check(printed.is_file(), f"the print command ran ({vm.print_message})")
    from PIL import Image

    check(Image.open(printed).width == 384, "the receipt is 384 dots wide")
    steps.append("receipt printed")
    await finger.press(screen(), "完成")
    await on("home")
    check(shows("微信支付  1 笔"), "today's totals count the payment")
    await finger.press(screen(), "重打小票")  # the printer jammed: the last receipt again, from home
    await off.until(lambda: vm.reprint_message not in (None, STRINGS["result.printing"]), what="the reprint to finish")
    check((work / "prints.log").read_text().count("printed") == 2, f"the printer printed twice ({vm.reprint_message})")
    steps.append("receipt reprinted from home")

    # 6. a refund needs the supervisor PIN; a wrong PIN is refused with the tries left
    refund_id = his.envelope(order, "-12.50").msg_id
    service.submit_instruction(his.envelope(order, "-12.50", msg_id=refund_id))
    await on("instruction")
    check(shows("退款") and shows("−¥12.50"), "the refund is shown as a refund, with a minus sign")
    await finger.press(screen(), "主管确认退款")
    await on("refund_pin")
    for digit in "111111":
        await finger.press(screen(), digit)
    await finger.press(screen(), "确认")
    await off.until(lambda: shows("密码错误，还可再试 2 次"), what="the wrong PIN message with tries left")
    check(vm.screen == "refund_pin" and service.view().screen.value == "awaiting_supervisor", "nothing refunded on a wrong PIN")
    for digit in PIN:
        await finger.press(screen(), digit)
    await finger.press(screen(), "确认")
    await on("result")
    check(shows("退款成功"), "the refund is done")
    check(bridge.result(refund_id, timeout=5).pay_status is PayStatus.REFUNDED, "HIS got REFUNDED")
    check(int(sandbox.account(code)["balance_fen"]) == 100_00, "the patient got the 12.50 back")
    steps.append("refund with wrong then right PIN")
    await finger.press(screen(), "完成")

    # 7. cancel before a scan: nothing charged, CLOSED
    cancel_order = f"MZ{int(time.time() * 1000) + 1}"
    cancel_id = his.envelope(cancel_order, "+5.00").msg_id
    service.submit_instruction(his.envelope(cancel_order, "+5.00", msg_id=cancel_id))
    await on("instruction")
    await finger.press(screen(), "取消收款")
    await on("result")
    check(shows("已取消，未扣款"), "the result says cancelled, nothing charged")
    check(bridge.result(cancel_id, timeout=5).pay_status is PayStatus.CLOSED, "HIS got CLOSED")
    steps.append("cancel")

    # 8. English at runtime, and the history finds the order
    vm.set_language("en")
    await finger.press(screen(), "Done")
    await on("home")
    await finger.press(screen(), "Today's list")
    await on("history")
    check(shows(order) and shows("Refunded") and shows("Paid"), "today's list shows the collection and the refund")
    steps.append("english and history")

    # 9. a power cycle as the simulator does it: a new service recovers from the same journal and
    #    the screens follow it (App.rebind); the old one is never asked again
    await finger.press(screen(), "Back")
    await on("home")
    service.close()
    again = open_service(work / "journal.db", service.config)  # showing an instruction needs no channel
    work_services.append(again)
    app.rebind(again)
    await on("result")  # after power-on the cashier sees the last result again (the journal's)
    check(shows(cancel_order), "the recovered last result is the cancelled order")
    await finger.press(screen(), "Done")
    await on("home")
    next_order = f"MZ{int(time.time() * 1000) + 2}"
    again.submit_instruction(his.envelope(next_order, "+3.00"))
    await on("instruction")
    check(shows(next_order) and shows("¥3.00"), "the new service's instruction is on screen")
    steps.append("power cycle: the screens follow the new service")


def main(argv: list[str] | None = None) -> int:
    return main_with_report(__doc__, argv, run)


def run(work: Path, steps: list[str]) -> str | None:
    sandbox = SandboxProcess(str(work / "sandbox"))
    sandbox.start()
    service = None
    started: list = []  # services the scenario starts (after a simulated power cycle)
    try:
        settings = settings_from_sandbox(sandbox.credentials_path, wechat=FAST, alipay=FAST)
        # the receipt printer comes from the device configuration (printer.command), as on a POS
        printed, log = shlex.quote(str(work / "printed.png")), shlex.quote(str(work / "prints.log"))
        printer = parse_print_command(f"sh -c 'cp \"$1\" {printed} && echo printed >> {log}' sh {{png}}")
        config = dataclasses.replace(make_config(), printer=printer)
        service = open_service(work / "journal.db", config, build_clients(settings))
        bridge, his = Bridge(service), His()
        app = build_app(service, fonts=prepare_fonts(), camera_index=None, probe_network=False,
                        receipts_dir=work / "receipts")
        return off.run_app(app, lambda a: scenario(a, sandbox, bridge, his, work, steps, started))
    finally:
        for other in started:
            other.close()
        if service is not None:
            service.close()
        sandbox.stop()


if __name__ == "__main__":
    sys.exit(main())
