"""How busy the machine's cores are while a command runs: the system-wide share of CPU time
(from /proc/stat, Linux) that was not idle, with the command's wall time. The measurement
behind `make test`'s two xdist workers: the Ray tests alone left about a third of the
2-core box idle (tests/conftest.py, `pytest_collection_modifyitems`).

    python experiments/busy_fraction.py -- .venv/bin/python -m pytest -q tests/test_pretrain_ray.py

Prints one JSON line: the command's exit status, wall seconds and busy fraction (0-1) of
all cores together. Anything else running on the machine counts too: measure on a quiet box.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies over all cores since boot; idle and iowait are not busy."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:9]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to measure after --")
    busy0, total0 = _cpu_times()
    start = time.monotonic()
    rc = subprocess.call(command)
    wall = time.monotonic() - start
    busy1, total1 = _cpu_times()
    busy = (busy1 - busy0) / max(1, total1 - total0)
    print(json.dumps({"rc": rc, "wall_s": round(wall, 1), "busy": round(busy, 3)}), flush=True)
    sys.exit(rc)


if __name__ == "__main__":
    main()
