"""The virtual POS device (link endpoint, bootloader, flashing, faults) and the payment-channel sandbox."""
