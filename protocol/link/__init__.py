"""The bridge <-> POS link over USB or serial: frames, decoder, handshake, reliability, messages.

Layers, bottom up (each its own module and tests): `frame` (bytes of one frame), `decoder`
(bytes in any chunking -> frames), `handshake` (HELLO proof of the device key), `session` (the
reliable link state machine), `app` (what DATA frames carry).
"""
