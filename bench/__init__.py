"""Benchmarks: `make bench` runs every `bench/bench_*.py` and prints one JSON summary.

Each module defines `run(quick: bool) -> dict` returning
    {"figures": {name: number, ...},           # what was measured, with units in the names
     "targets": {name: "<= 50 us", ...},        # the goals, stated against the figures
     "baseline": {name: number, ...},           # the physical limit or a baseline measured in the same run
     "met": {name: true/false, ...}}            # each target, met or not
A benchmark never fails the build; it reports. Timings use time.perf_counter_ns.
"""
