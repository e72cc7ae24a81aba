"""Run the benchmarks: `python -m bench [--quick] [name ...]`; prints one JSON object."""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import platform
import sys
import time

import bench


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run, not figures to quote)")
    parser.add_argument("names", nargs="*", help="run only these (e.g. protocol bridge); default: all")
    args = parser.parse_args(argv)
    modules = sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_"))
    wanted = [m for m in modules if not args.names or m.removeprefix("bench_") in args.names]
    summary: dict[str, object] = {
        "machine": {"python": platform.python_version(), "cpu_count": __import__("os").cpu_count(), "platform": platform.platform()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "results": {},
    }
    results: dict[str, object] = summary["results"]  # type: ignore[assignment]  # the dict created just above as results
    for name in wanted:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        module = importlib.import_module(f"bench.{name}")
        started = time.perf_counter()
        try:
            result = module.run(quick=args.quick)
        except Exception as exc:  # a broken benchmark is reported, and the others still run
            result = {"error": f"{type(exc).__name__}: {exc}"}
        result["seconds"] = round(time.perf_counter() - started, 2)
        results[name.removeprefix("bench_")] = result
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
