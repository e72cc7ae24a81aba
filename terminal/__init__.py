"""The POS terminal: everything that ships on the POS. The device end of the link (terminal.link),
instruction handling, payment-code routing, channel clients, journal, recovery, UI."""

# What the POS app announces in its HELLO (the "firmware" field) and shows in its settings.
__version__ = "0.1.0"
