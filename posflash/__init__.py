"""The field engineer's PC tool, `pos-flash`: image building and private signing keys, the device
records and configuration images (provisioning), and the flasher. It ships to field engineers, not
with the bridge or the POS."""
