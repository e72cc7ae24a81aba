"""Peak memory of a whole process tree, sampled from /proc while it runs (Linux).

A process's own peak (VmHWM, ru_maxrss) misses its workers, and adding every process's peak
overstates the tree twice: the peaks need not coincide, and a forked worker's resident pages are
largely its parent's, shared copy-on-write. So a sampler thread walks the tree every few
milliseconds and sums each process's PSS (proportional set size: a page shared by k processes
counts 1/k in each, `/proc/PID/smaps_rollup`): the tree's real footprint at that moment. The peak
of those sums is what the machine had to have. A peak shorter than the interval can be missed, so
the runners also report the upper bound (the processes' peaks added).
"""

from __future__ import annotations

import os
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

# Sampling interval: reading smaps_rollup walks the page tables, which costs CPU on a shared machine;
# a reconciliation's peak lasts seconds (its columns), far longer than this.
INTERVAL_S = 0.1


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                out += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
            except OSError:
                continue
    except OSError:
        pass
    return out


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def tree_pss_kib(root: int) -> tuple[int, int]:
    """The PSS of `root` and all its descendants now, in KiB, and how many processes that is."""
    total, count, todo = 0, 0, [root]
    while todo:
        pid = todo.pop()
        total += _pss_kib(pid)
        count += 1
        todo += _children(pid)
    return total, count


@dataclass
class TreePeak:
    peak_kib: int = 0
    samples: int = 0
    processes: int = 1  # the most processes seen at once


def supported() -> bool:
    return Path(f"/proc/{os.getpid()}/smaps_rollup").exists()


def run_sampled(args: list[str], **popen: object) -> tuple[subprocess.CompletedProcess, TreePeak]:
    """Run a command to its end (stdout and stderr captured) while sampling its tree's PSS."""
    peak = TreePeak()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)  # type: ignore[call-overload]  # popen is passed through: Popen's overloads cannot be matched on **object
    done = threading.Event()

    def sample() -> None:
        while not done.wait(INTERVAL_S):
            total, pids = tree_pss_kib(proc.pid)
            peak.samples += 1
            peak.peak_kib = max(peak.peak_kib, total)
            peak.processes = max(peak.processes, pids)

    sampler = threading.Thread(target=sample, name="pss-sampler", daemon=True)
    if supported():
        sampler.start()
    out, err = proc.communicate()
    done.set()
    if sampler.is_alive():
        sampler.join()
    return subprocess.CompletedProcess(args, proc.returncode, out, err), peak
