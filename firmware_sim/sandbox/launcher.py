"""Start a `channel-sandbox` process and read its URL and credentials: for tests, the simulator, `make run`.

    with SandboxProcess(data_dir) as sandbox:
        clients = build_clients(settings_from_sandbox(sandbox.credentials_path))
        code = sandbox.issue_code("WECHAT", "100.00", "success")["code"]

The process listens on an ephemeral port; it is stopped with SIGTERM (then killed if it lingers)
when the context ends, whatever happened inside.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from typing import IO

import requests

from protocol.errors import CodedError
from protocol.strictjson import ReportJson


class SandboxStartError(CodedError, RuntimeError):
    code = "sandbox_start"


class SandboxProcess:
    def __init__(self, data_dir: str, *, extra_args: tuple[str, ...] = (), log_path: str | None = None) -> None:
        self.data_dir = data_dir
        self.extra_args = extra_args
        self.log_path = log_path or os.path.join(data_dir, "sandbox.log")
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.credentials_path = ""
        self.credentials: dict[str, object] = {}
        self._log: IO[bytes] | None = None

    def start(self, timeout_s: float = 30.0) -> "SandboxProcess":
        os.makedirs(self.data_dir, exist_ok=True)
        self._log = open(self.log_path, "ab")
        command = [sys.executable, "-m", "firmware_sim.sandbox.server", "--port", "0", "--data-dir", self.data_dir, *self.extra_args]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self._log)
        lines: queue.Queue[bytes] = queue.Queue()
        assert self.process.stdout is not None
        stdout = self.process.stdout
        threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=timeout_s)
            ready = json.loads(line)
            self.url, self.credentials_path = ready["url"], ready["credentials"]
        except (queue.Empty, ValueError, KeyError, TypeError):
            self.stop()
            raise SandboxStartError(f"channel-sandbox did not report ready in {timeout_s:g} s; see {self.log_path}") from None
        with open(self.credentials_path, encoding="utf-8") as handle:
            self.credentials = json.load(handle)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "SandboxProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the control API, for tests and demos -------------------------------------------------

    def control(self, method: str, path: str, body: ReportJson | None = None) -> ReportJson:
        response = requests.request(method, self.url + "/sandbox/v1" + path, json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def issue_code(self, channel: str, balance: str = "100.00", behaviour: str = "success") -> ReportJson:
        return self.control("POST", "/codes", {"channel": channel, "balance": balance, "behaviour": behaviour})

    def account(self, code: str) -> ReportJson:
        return self.control("GET", f"/accounts/{code}")
