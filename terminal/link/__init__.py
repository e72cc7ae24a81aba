"""The device end of the bridge <-> POS link: the endpoint, its wires (chosen by URL), who the
application answers (only a bridge), and attaching a terminal service to it (pos-app)."""
