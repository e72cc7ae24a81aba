"""Child process of bench_ui: cold start (process start -> home drawn) and instruction -> amount
drawn, measured on the real app offscreen around a real TerminalService."""

from __future__ import annotations

import time

T_PROCESS = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from terminal.ui import display  # noqa: E402

display.prepare_kivy(kivy_home=tempfile.mkdtemp(prefix="kivy-home-"), offscreen=True)

from terminal.ui.app import PORTRAIT, build_app, configure_window  # noqa: E402

configure_window(PORTRAIT)

from terminal.ui import offscreen as off  # noqa: E402
from terminal.ui.fonts import prepare_fonts  # noqa: E402
from tests.terminal.helpers import His, make_config, open_service  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--n", type=int, default=20)
    args = parser.parse_args()
    service = open_service(args.work / "journal.db", make_config())
    his = His()
    app = build_app(service, fonts=prepare_fonts(), camera_index=None, probe_network=False)
    out: dict = {"instruction_to_amount_ms": [], "submit_ms": []}

    async def scenario(a) -> None:  # type: ignore[no-untyped-def]
        vm = a.vm
        await off.until(lambda: a.home_drawn_at is not None, what="home drawn")
        out["cold_start_s"] = a.home_drawn_at - T_PROCESS
        for i in range(args.n):
            envelope = his.envelope(f"MZB{i:06d}", f"+{i + 1}.50")
            start = time.perf_counter()
            service.submit_instruction(envelope)
            out["submit_ms"].append((time.perf_counter() - start) * 1000)
            want = f"{i + 1}.50"
            await off.until(lambda: vm.amount_text == want and vm.screen == "instruction", what="the amount")
            # drawn: the label holds the text and the frame with it has been rendered
            off.grab()
            out["instruction_to_amount_ms"].append((time.perf_counter() - start) * 1000)
            service.cancel()
            await off.until(lambda: vm.screen == "result", what="the result")
            vm.dismiss_result()
            await off.until(lambda: vm.screen == "home", what="home")

    error = off.run_app(app, scenario)
    service.close()
    if error:
        raise SystemExit(error)
    s = sorted(out["submit_ms"])
    out["submit_p50_ms"] = round(s[len(s) // 2], 2)
    args.report.write_text(json.dumps(out))


if __name__ == "__main__":
    main()
