"""The README's "HIS vendors start here" commands work as written, in order, in one terminal
(issue 15, finding 9): each command is run with bash in a directory where `make run HEADLESS=1 &`
has started the headless system (firmware_sim/system.py, as `make run` does), and what it prints
is compared with what the README shows under it (the lines starting with `# `)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.firmware_sim.test_system import Launcher

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BLOCK = re.compile(r"<!-- readme-sequence:.*?-->\n```sh\n(.*?)```\n<!-- /readme-sequence -->", re.S)
# What varies between runs: msg_ids, times, transaction numbers, masked codes.
VARIES = [(re.compile(r"HIS-T0001-\d+-[0-9a-f]{8}"), "MSG_ID"), (re.compile(r"\d{2}:\d{2}:\d{2}"), "TIME"),
          (re.compile(r"\d{4}-\d{2}-\d{2}"), "DATE"), (re.compile(r"pay_order_no  \S+"), "pay_order_no  N"),
          (re.compile(r"\d{4}\*+\d{4}"), "CODE")]


def readme_sequence() -> list[tuple[str, list[str]]]:
    """(command, the output lines the README shows under it), in order."""
    match = BLOCK.search((ROOT / "README.md").read_text(encoding="utf-8"))
    assert match, "README.md lost its readme-sequence block"
    steps: list[tuple[str, list[str]]] = []
    for line in match.group(1).splitlines():
        if line.startswith("# "):
            steps[-1][1].append(line[2:])
        elif line.strip():
            command = re.sub(r"\s+# .*$", "", line).strip()  # the comment: " # " to the end
            steps.append((command, []))
    return steps


def normalised(line: str) -> str:
    for pattern, replacement in VARIES:
        line = pattern.sub(replacement, line)
    return line.rstrip()


def test_the_readme_sequence_runs_as_written(tmp_path: Path) -> None:
    steps = readme_sequence()
    assert steps[0][0] == "make run HEADLESS=1 &"
    launcher = Launcher(tmp_path / ".run")  # what `make run HEADLESS=1 &` starts, in this directory
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    try:
        for command, shown in steps[1:]:
            run = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90)
            assert run.returncode in (0, 3), f"{command}\n{run.stdout}\n{run.stderr}"  # 3: not finished yet (--wait 3)
            printed = [normalised(line) for line in run.stdout.splitlines()]
            for want in shown:
                if want.strip() == "...":
                    continue
                assert normalised(want) in printed, f"{command}: README shows {want!r}; it printed:\n{run.stdout}{run.stderr}"
    finally:
        launcher.stop(signal.SIGINT)
