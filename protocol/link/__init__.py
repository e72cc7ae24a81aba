"""The bridge <-> POS link over USB or serial: frames, decoder, handshake, security, reliability, messages.

Layers, bottom up (each its own module and tests): `frame` (bytes of one frame), `decoder`
(bytes in any chunking -> frames), `handshake` (both ends prove their keys; an ephemeral X25519
exchange), `secure` (session keys per direction, the AEAD of every frame), `hostkeys` (the hosts'
identity keys and the device's pins of them), `session` (the reliable, authenticated link state
machine), `app` (what DATA frames carry).
"""
