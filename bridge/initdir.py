"""`his-bridge init DIR`: a working directory for a new bridge, with a documented example config.

Writes config.toml (every setting, commented, at its default), empty device and terminal
registries (headers only), a key file holding one fresh key (mode 0600) and the bridge's link
identity key (mode 0600; its public half, bridge_identity.pub, is what every POS pins). Never overwrites.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from protocol.crypto import SharedKey
from protocol.registry import format_device_csv, format_terminal_csv

from bridge.keystore import IDENTITY_FILE, KeyStoreError, new_identity, new_key
from local_storage.atomic_file import write_atomically

EXAMPLE_CONFIG = """\
# his-bridge configuration. Every setting is shown at its default; docs/bridge.md explains each.
# Relative paths are relative to this file's directory.

[http]
host = "127.0.0.1"          # loopback only, unless you name an address AND list allow_clients
port = 8765
allow_clients = []          # e.g. ["10.1.2.30", "10.1.3.0/24"]: required for a non-loopback host
request_timeout_s = 10.0    # a whole request (line, headers, body) must arrive within this
idle_timeout_s = 30.0       # kept-alive connections with no request are closed after this
first_byte_timeout_s = 2.0  # a new connection that says nothing is closed after this (0.1-2)
max_connections = 200       # open at once; past this the longest-idle connection is closed first

[security]
key_file = "keys.json"      # shared keys (his-bridge keys ...); must be readable by its owner only
identity_file = "bridge_identity.key"  # this bridge's link identity (pinned by each POS); owner only
clock_skew_s = 300          # accepted difference between HIS's ts and this PC's clock
answer_ttl_s = 604800       # an identical re-POST is answered from the journal this long (>= 24 h)
limits_file = ""            # the hospital's limit from the gateway: gateway-admin hospital limits H001 --out limits.json
amount_limit = "50000.00"   # without limits_file only: per-transaction limit in yuan; larger amounts are refused (bad_amount)
instruction_ttl_s = 600     # an instruction without its own expires_at expires this long after it arrives
his_public_keys = []        # HIS's Ed25519 public keys (base64); a his_sig on an instruction must verify
require_his_signature = false  # true: every instruction needs a valid his_sig (else auth_failed)
require_his_signature_terminals = []  # the same, for these terminal IDs only

[registry]
devices = "devices.csv"     # device_id,model,serial_no,public_key (his-bridge devices import)
terminals = "terminals.csv" # terminal_id,description,device_id (his-bridge terminals import / bind)

[journal]
path = "journal.sqlite3"    # every instruction and result; back it up, never delete it
synchronous = "FULL"        # FULL survives power loss; NORMAL survives crashes only (faster)
busy_timeout_s = 10         # a write waits this long for a lock another program holds, then 503 storage_unavailable
retention_days = 400        # finished records older than this are archived (archive_dir, one file a month) and removed
archive_dir = "archive"     # monthly archives: journal-YYYY-MM.jsonl.gz with a .sha256 beside each

[link]
ports = ["auto"]            # one URL per POS: "serial:COM3", "serial:/dev/ttyACM0", "auto",
                            # "auto:1209:7D01", "usb://1209:7D01/SERIAL", "socket://127.0.0.1:7001",
                            # an Android POS: "aoa://VID:PID" or "aoa://*/SERIAL" (docs/android-pos.md)
baud = 115200               # serial ports only
reconnect_min_s = 0.5       # first retry after a port fails; doubles up to reconnect_max_s
reconnect_max_s = 10.0
stall_alarm_s = 600.0       # an unfinished instruction that has not moved for this long: alarm in health and the log

[link.timers]
rto_base_s = 0.3            # retransmit an unacknowledged frame after this + 2x its wire time
max_tries = 5               # transmissions of one frame before the link is reset
window = 8                  # frames in flight at once
keepalive_s = 2.0           # PING after this much silence
dead_after_s = 6.0          # the device is considered gone after this much silence
hello_retry_s = 1.0         # repeat the handshake this often until a device answers
marks_refresh_s = 30.0      # exchange high-water marks again this often on a live link

[log]
level = "INFO"              # DEBUG, INFO, WARNING or ERROR
file = ""                   # empty: standard error (the service manager's log); else a file path
"""


def init_directory(directory: Path, *, kid: str | None = None, suite: str = "AES-256-GCM") -> tuple[list[Path], SharedKey]:
    """Create the files; returns (files written, the new key). Refuses if any already exists."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        directory / "config.toml": EXAMPLE_CONFIG,
        directory / "devices.csv": format_device_csv([]),
        directory / "terminals.csv": format_terminal_csv([]),
    }
    key_path = directory / "keys.json"
    identity_path = directory / IDENTITY_FILE
    existing = [p for p in (*files, key_path, identity_path) if p.exists()]
    if existing:
        raise KeyStoreError(f"{', '.join(str(p) for p in existing)} already exist(s); init never overwrites")
    if os.name == "posix":
        directory.chmod(0o700)  # keys, journal and logs live here
    key = new_key(key_path, kid or time.strftime("k%Y%m"), suite)
    new_identity(identity_path, "bridge-" + time.strftime("%Y%m%d"))
    for path, text in files.items():
        write_atomically(path, text)
    return [*files, key_path, identity_path, identity_path.with_suffix(".pub")], key
