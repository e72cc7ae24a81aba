"""The bridge daemon on the cashier's PC: HIS-facing HTTP API, device link, registries, journal, CLI."""
