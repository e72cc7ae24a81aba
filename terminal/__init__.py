"""The POS terminal: instruction handling, payment-code routing, channel clients, journal, recovery, UI."""
