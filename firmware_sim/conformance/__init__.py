"""The conformance kit for HIS vendors (`his-conformance`): our side of "joint debugging".

It sits between the vendor's HIS and the bridge as a recording proxy (proxy.py), plays the cashier
and the patient through the simulator's control API and the channel sandbox (scenarios.py), tells
the vendor's operator what to send and asks them to confirm what only HIS can see (operator.py),
checks what it can observe (the envelopes HIS sends, that HIS re-asks with GET instead of sending a
new `+`, that HIS does not act on a tampered result), and prints a pass/fail report (cli.py).
"""
