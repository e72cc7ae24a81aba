"""Rules for the files a process keeps on its own machine, shared by the bridge and the POS; and
(stop_signals) how a daemon takes SIGINT/SIGTERM, shared by every daemon we ship and the simulator's.

Both the bridge (bridge/) and the POS (terminal/) keep journals and logs on local disk and must apply
the same rules to them; neither may import the other, and protocol/ is pure (sans-I/O: it takes bytes
and time as arguments and never touches a file), so the rules live here: a small package that depends
on nothing but the standard library and ships with both, as protocol/ does.
"""
