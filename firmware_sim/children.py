"""Child processes of the headless system: started apart, watched, stopped in order, never orphaned.

    child = Child("bridge", [sys.executable, "-m", "bridge.cli", ...], log_path).start()
    line = child.ready_line(timeout_s=30)       # the first stdout line, JSON (sandbox, pos-sim)
    child.stop()                                 # SIGTERM, then SIGKILL after a grace period

Each child runs in its own session (process group): Ctrl-C in the terminal reaches the launcher
only, which stops the children in order (bridge, device, sandbox), so no journal is cut mid-way by a
signal racing the shutdown. On Linux each child also gets PR_SET_PDEATHSIG=SIGTERM, so a launcher
killed with -9 still takes its children down (pos-sim additionally watches its parent). stderr
goes to a log file per child; stdout is read for the ready line and then drained.

A child that does not stop within the grace period is a defect to find, not only to kill: the
children run with PYTHONFAULTHANDLER=1, so on POSIX they get SIGABRT first and write every
thread's stack into their log; then SIGKILL. The launcher's log says which child it was.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Sequence

from firmware_sim.simerrors import SimCode, SimError

STOP_GRACE_S = 15.0
ABORT_GRACE_S = 3.0  # for the stacks of a child that lingered to reach its log, before SIGKILL
PR_SET_PDEATHSIG = 1

log = logging.getLogger("firmware_sim.children")


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGABRT on a lingering child: its stacks, no core file
    except (ImportError, OSError, ValueError):
        pass
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not glibc Linux: pos-sim's --exit-with-parent and the launcher's finally still apply


class Child:
    def __init__(self, name: str, command: Sequence[str], log_path: Path, *, cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.command = list(command)
        self.log_path = log_path
        self.cwd = cwd
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._lines: queue.Queue[bytes] = queue.Queue()

    def start(self) -> "Child":
        self.log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # The children's logs hold orders and amounts: owner-only, as on the bridge and the POS.
        self._log = os.fdopen(os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0),
                                      0o600), "ab")
        linux = sys.platform.startswith("linux")
        kwargs: dict[str, object] = {"start_new_session": True} if os.name == "posix" else \
            {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
        env = dict(os.environ if self.env is None else self.env) | {"PYTHONFAULTHANDLER": "1"}
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL,
                                        cwd=self.cwd, env=env, preexec_fn=_die_with_parent if linux else None,
                                        **kwargs)  # type: ignore[call-overload]  # Popen's platform-specific keywords (start_new_session or creationflags)
        threading.Thread(target=self._drain, name=f"{self.name}-stdout", daemon=True).start()
        return self

    def _drain(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in iter(self.process.stdout.readline, b""):
            self._lines.put(line)
        self._lines.put(b"")

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ready_line(self, timeout_s: float) -> dict[str, object]:
        """The child's first stdout line as JSON ({"event": "ready", ...})."""
        try:
            line = self._lines.get(timeout=timeout_s)
        except queue.Empty:
            raise SimError(SimCode.START_FAILED, f"{self.name} did not report ready within {timeout_s:g} s; see {self.log_path}") from None
        try:
            ready = json.loads(line)
            if not isinstance(ready, dict):
                raise ValueError
        except ValueError:
            raise SimError(SimCode.START_FAILED, f"{self.name} exited or printed no ready line; see {self.log_path}:\n"
                           f"{self.log_tail()}") from None
        return ready

    def _abort(self, process: "subprocess.Popen[bytes]", grace_s: float) -> None:
        log.error("%s (pid %d) did not stop within %g s of SIGTERM; killing it%s", self.name, process.pid, grace_s,
                  f" (its threads' stacks: {self.log_path})" if os.name == "posix" else "")
        if os.name == "posix":
            try:
                process.send_signal(signal.SIGABRT)
                process.wait(timeout=ABORT_GRACE_S)
                return
            except subprocess.TimeoutExpired:
                pass
            except ProcessLookupError:
                return
        process.kill()
        process.wait(timeout=grace_s)

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace_s: float = STOP_GRACE_S) -> int | None:
        """SIGTERM (CTRL_BREAK on Windows) and wait; if it lingers, SIGABRT (its stacks go to its log)
        and then SIGKILL. Returns the exit status."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            try:
                process.send_signal(signal.SIGTERM if os.name == "posix" else signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]  # signal.CTRL_BREAK_EVENT exists on Windows only; this branch runs only there
                process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self._abort(process, grace_s)
            except ProcessLookupError:
                pass
        if self._log is not None:
            self._log.close()
            self._log = None
        if process.stdout is not None:
            process.stdout.close()
        return process.returncode


def run_tool(command: Sequence[str], *, cwd: Path | None = None, timeout_s: float = 60.0) -> str:
    """Run a one-shot command (his-bridge init ...); its stdout, or SimError with its stderr."""
    try:
        done = subprocess.run(list(command), cwd=cwd, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SimError(SimCode.START_FAILED, f"{' '.join(command[:4])}: {exc}") from None
    if done.returncode != 0:
        raise SimError(SimCode.START_FAILED, f"{' '.join(command[:6])} failed ({done.returncode}): {done.stderr.strip()[-800:]}")
    return done.stdout
