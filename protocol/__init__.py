"""The pure protocol core: what HIS, bridge and POS say to each other.

No sockets, files, threads, sleeping or clock reads here: time, randomness and storage are passed
in, so every rule is testable in isolation. Modules:

- `errors`     the spec's stable error codes and `ProtocolError`
- `amount`     the one strict parser/formatter between yuan strings and integer fen
- `ids`        identifier grammars
- `strictjson` strict JSON decoding and typed field access
- `messages`   instruction and result plaintexts, statuses, channels, result codes
- `crypto`     cipher suites (AES-256-GCM, SM4-GCM) and the key ring
- `envelope`   sealing and opening envelopes; the receiver's check pipeline
- `freshness`  clock window and msg_id replay/idempotency rules
- `signing`    Ed25519 (device keys, firmware images)
- `integrity`  journal row checksums and the high-water mark record
- `link`       frames, decoder, handshake, reliable link state machine, DATA messages
"""
