"""`his-conformance`: run the conformance scenarios against a vendor's HIS.

    make run HEADLESS=1                                 # the simulator, the sandbox and the bridge
    his-conformance --demo .run/demo.json               # then point the HIS at the URL it prints

Exit status: 0 every scenario passed, 1 a scenario failed or was skipped, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from firmware_sim.conformance.operator import ConsoleOperator, JsonLinesOperator, Operator
from firmware_sim.conformance.scenarios import SCENARIOS, Demo, Kit, ScenarioReport, run

EXIT_PASS, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def render(reports: list[ScenarioReport]) -> str:
    lines = ["", "conformance report", "=================="]
    for r in reports:
        verdict = "SKIP" if r.skipped else "PASS" if r.passed else "FAIL"
        lines.append(f"{verdict}  {r.name:<18} {r.title}")
        if r.skipped:
            lines.append(f"      {r.skipped}")
        for c in r.checks:
            if not c.passed:
                lines.append(f"      x {c.name}{': ' + c.detail if c.detail else ''}")
    passed = sum(r.passed for r in reports)
    lines.append(f"\n{passed} of {len(reports)} scenarios passed")
    return "\n".join(lines)


def as_json(reports: list[ScenarioReport]) -> dict[str, object]:
    return {"scenarios": [{"name": r.name, "title": r.title, "passed": r.passed, "skipped": r.skipped,
                           "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in r.checks]}
                          for r in reports],
            "passed": all(r.passed for r in reports)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="his-conformance",
        description="Play the cashier and the patient on the simulated POS while your HIS talks to the bridge through "
                    "this kit; check what HIS sends and does, ask you what only HIS can show, and print a pass/fail "
                    "report. Start the system first: make run HEADLESS=1.",
        epilog=f"scenarios: {', '.join(SCENARIOS)}. docs/conformance.md walks through a run.")
    parser.add_argument("--demo", required=True, type=Path, help="the running system's demo file (.run/demo.json)")
    parser.add_argument("--listen", default="127.0.0.1:8766", help="where HIS connects instead of the bridge (default 127.0.0.1:8766)")
    parser.add_argument("--only", help="comma-separated scenario names (default: all, in order)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each thing HIS must do (default 120)")
    parser.add_argument("--json-lines", action="store_true",
                        help="steps and questions as JSON lines on stdout, answers as JSON lines on stdin (a test rig drives HIS)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    names = [n.strip() for n in args.only.split(",")] if args.only else None
    unknown = [n for n in names or [] if n not in SCENARIOS]
    host, _, port = args.listen.rpartition(":")
    if unknown or not port.isdigit():
        print(f"his-conformance: {'unknown scenario(s) ' + ', '.join(unknown) if unknown else 'bad --listen ' + args.listen}",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        demo = Demo.load(args.demo)
    except (OSError, ValueError, KeyError) as exc:
        print(f"his-conformance: cannot read {args.demo} ({exc}); start the system with make run HEADLESS=1", file=sys.stderr)
        return EXIT_USAGE
    operator: Operator = JsonLinesOperator() if args.json_lines else ConsoleOperator()
    kit = Kit(demo, operator, timeout_s=args.timeout, listen=(host or "127.0.0.1", int(port)))
    kit.proxy.start()
    operator.note(f"his-conformance: point your HIS at {kit.proxy.url} instead of {demo.bridge_url}; orders are CONF{kit.run_id}*")
    try:
        reports = run(kit, names)
    finally:
        kit.proxy.stop()
    if args.json_lines:
        print(json.dumps({"event": "report", **as_json(reports)}, ensure_ascii=False), flush=True)
    else:
        print(render(reports), flush=True)
    return EXIT_PASS if all(r.passed for r in reports) else EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
