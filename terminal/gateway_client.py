"""The POS's connection to the payment gateway: every request signed by the device key, the
gateway's certificate pinned.

    gw = GatewayConnection("https://gw.example.cn", device_id="POS-0001", seed=device_seed,
                           firmware="1.4.2", pinned_cert="/data/config/gateway.pem")
    status, reply = gw.post("/v1/pay", {...})

`pinned_cert` is the certificate (or the private CA) set at provisioning: TLS is verified against it
alone, never against the system's CA list, so a certificate from any public CA is refused. Plain
http:// is accepted only for a loopback gateway (`make run`). Network failures are returned as a
status of 0 with {"error": {"code": "network", ...}}, never raised: the caller decides (query,
then reverse), exactly as with a channel.
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable
from urllib.parse import urlsplit

import requests

from protocol.device_request import NONCE_SIZE, sign_request

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 20.0  # above the gateway's own channel timeouts, so its answer arrives
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


class GatewayConfigError(ValueError):
    code = "gateway_config"


class GatewayConnection:
    def __init__(self, url: str, *, device_id: str, seed: bytes, firmware: str = "", pinned_cert: str | None = None,
                 clock: Callable[[], float] = time.time, session: requests.Session | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme == "https":
            if not pinned_cert:
                raise GatewayConfigError("an https gateway needs its pinned certificate (gateway.pinned_cert)")
        elif parts.scheme == "http":
            if parts.hostname not in LOOPBACK_HOSTS:
                raise GatewayConfigError(f"plain http is only allowed for a gateway on this machine, not {parts.hostname}")
        else:
            raise GatewayConfigError(f"gateway URL {url!r} must be https:// (or http:// on loopback)")
        self.url = url.rstrip("/")
        self._device_id = device_id
        self._seed = seed
        self._firmware = firmware
        self._verify: str | bool = pinned_cert if pinned_cert else False
        self._clock = clock
        self._session = session or requests.Session()

    def post(self, path: str, obj: dict) -> tuple[int, dict]:
        body = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = sign_request(self._seed, method="POST", path=path, device_id=self._device_id, ts=int(self._clock()),
                               nonce=os.urandom(NONCE_SIZE), firmware=self._firmware, body=body)
        headers["Content-Type"] = "application/json"
        try:
            response = self._session.post(self.url + path, data=body, headers=headers, verify=self._verify,
                                          timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S), allow_redirects=False)
            reply = response.json()
        except requests.exceptions.SSLError as exc:
            return 0, {"error": {"code": "tls", "message": f"the gateway's certificate is not the pinned one: {exc.__class__.__name__}"}}
        except (requests.exceptions.RequestException, ValueError) as exc:
            return 0, {"error": {"code": "network", "message": f"no answer from the gateway: {exc.__class__.__name__}"}}
        return response.status_code, reply if isinstance(reply, dict) else {}
