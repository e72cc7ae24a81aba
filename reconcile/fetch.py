"""Download the day's bills through the channel clients (gateway.channels), and keep them.

The settings file holds channel settings (gateway.channels.settings; the POS no longer has them):
`{"wechat": {...}, "alipay": {...}}`, or a whole configuration with a "channels" key. The
clients sign the bill requests as the channels require; pointing them at the production gateways
or at the sandbox is configuration only. Each bill is saved (atomically) under the output folder,
so a reconciliation can always be re-run, and audited, from the exact bytes the channel served.

A day without transactions is not an error: the channel says "no bill" and we record an empty bill.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from local_storage.atomic_file import write_atomically
from reconcile.errors import ConfigError, SourceUnavailable
from reconcile.model import Channel

# The same names as the payment gateway's bills directory (gateway/bills.py), so `--bills-dir` reads it.
BILL_NAMES = {Channel.WECHAT: "wechat-{day}.csv", Channel.ALIPAY: "alipay-{day}.zip"}
NO_BILL = "{channel}-{day}.nobill"


def bills_from_dir(folder: Path, day: datetime.date) -> dict[Channel, Path | None]:
    """The day's bills in a folder the gateway fills (`gateway-admin bills fetch`): {channel: file, or
    None when the gateway recorded that the channel has no bill that day}. A channel with neither is
    left out (not downloaded yet, or not a channel of this hospital)."""
    if not folder.is_dir():
        raise ConfigError(f"bills folder {folder} does not exist (the gateway writes DIR/HOSPITAL: give that folder)")
    found: dict[Channel, Path | None] = {}
    for channel, name in BILL_NAMES.items():
        path = folder / name.format(day=day.isoformat())
        if path.is_file():
            found[channel] = path
        elif (folder / NO_BILL.format(channel=channel.name.lower(), day=day.isoformat())).is_file():
            found[channel] = None
    return found


def load_settings(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the channel settings {path}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"channel settings {path} is not valid UTF-8 JSON: {exc}") from None
    if isinstance(data, dict) and "channels" in data:
        data = data["channels"]
    if not isinstance(data, dict):
        raise ConfigError(f"channel settings {path}: expected an object with wechat and/or alipay")
    return data


def fetch_bills(settings_path: Path, day: datetime.date, dest: Path) -> dict[Channel, Path | None]:
    """{channel: saved bill file, or None when the channel has no bill (no transactions that day)}."""
    from gateway.channels.errors import BillDownloadError, ChannelConfigError
    from gateway.channels.settings import build_clients

    settings = load_settings(settings_path)
    try:
        clients = build_clients(settings, base_dir=str(settings_path.parent))
    except ChannelConfigError as exc:
        raise ConfigError(f"channel settings {settings_path}: {exc}") from None
    dest.mkdir(parents=True, exist_ok=True)
    bills: dict[Channel, Path | None] = {}
    for pay_channel, client in clients.items():
        channel = Channel[pay_channel.value]
        try:
            data = client.download_bill(day)
        except BillDownloadError as exc:
            if exc.no_bill:
                bills[channel] = None
                continue
            raise SourceUnavailable(f"{channel.label}: the {day} bill could not be downloaded: {exc} (network? credentials? is the bill ready after 10:00?)") from None
        path = dest / BILL_NAMES[channel].format(day=day.isoformat())
        write_atomically(path, data)
        bills[channel] = path
    return bills
