"""pos-flash's own link identity: the maintenance key the devices pin at provisioning.

    pos-flash host-key new --name field-kit-07 --out keys/pos-flash      -> .key (0600) and .pub

The device opens a link session only with a host whose key it pinned (protocol.link.hostkeys); this
key is pinned as `maintenance`, so pos-flash reaches the bootloader and never the application (it
can never receive, and so acknowledge away, a result meant for HIS). The private file is created
exclusively, mode 0600, and refused when other users can read it.
"""

from __future__ import annotations

import os
from pathlib import Path

from protocol.flash import FlashCode, FlashError
from protocol.link.handshake import HostRole
from protocol.link.hostkeys import HostKey, format_private, format_public, new_host_key, parse_private
from terminal.secure_files import check_private_mode, read_text, write_new_file

HOST_KEY_ENV = "POS_FLASH_HOST_KEY"
DEFAULT_HOST_KEY = "pos-flash-host.key"


def create_host_key(base: Path, name: str) -> tuple[HostKey, Path, Path]:
    """Write BASE.key (0600) and BASE.pub; never overwrites."""
    private, public = base.with_name(base.name + ".key"), base.with_name(base.name + ".pub")
    if private.exists() or public.exists():
        raise FlashError(FlashCode.EXISTS, f"{private} or {public} already exists")
    key = new_host_key(name, HostRole.MAINTENANCE, os.urandom(32))
    write_new_file(private, format_private(key), private=True)
    write_new_file(public, format_public(key.public_key()), private=False)
    return key, private, public


def load_host_key(path: str | os.PathLike[str] | None) -> HostKey:
    chosen = Path(path or os.environ.get(HOST_KEY_ENV) or DEFAULT_HOST_KEY)
    if not chosen.exists():
        raise FlashError(FlashCode.BAD_KEY, f"no maintenance key at {chosen}; make one with pos-flash host-key new "
                         f"--out {chosen.with_suffix('')} and pin its .pub on the devices at provisioning")
    check_private_mode(chosen)
    key = parse_private(read_text(chosen, "maintenance key"), str(chosen))
    if key.role is not HostRole.MAINTENANCE:
        raise FlashError(FlashCode.BAD_KEY, f"{chosen} is a {key.role.value} key; pos-flash needs a maintenance key")
    return key
