"""The bridge daemon on the cashier's PC: HIS-facing HTTP API, device link, registries, journal, CLI.

Modules, from the wire up:
- `transport`   one interface per wire, chosen by URL: serial:, socket://, usb://, auto (`open_transport`)
- `devicelink`  one thread per device port: transport <-> protocol.link.session.Link(HOST), reconnects
- `journal`     SQLite (WAL) record of every instruction, state and result; the persistent msg_id store
- `relay`       the checks: which instructions reach a device, which results reach HIS
- `httpapi`     POST /v1/instructions, GET /v1/results/{msg_id}, GET /v1/health
- `config`, `keystore`, `registries`, `logjson`   configuration, key file, step-2 CSVs, JSON log lines
- `daemon`      assembles the above (`Bridge`, `serve`); `cli` is `his-bridge`; `initdir` is `his-bridge init`
- `hisclient`   the HIS reference client (`his-client`), the worked example of docs/his-interface.md
- `his_console` a line-based HIS console for demos, driving `hisclient`
Operations: docs/bridge.md.
"""
