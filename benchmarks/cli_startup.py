"""How fast every entry point answers ``--help``, against a bare interpreter start measured in the same run.

``python benchmarks/cli_startup.py [--repeats 3]`` prints JSON: per entry point the median seconds of
``python -m <module> --help``, its ratio to ``python -c pass`` and whether torch was imported. The issue that
asked for help on every command set the bar at under 3 seconds on a 2-core machine, without torch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from launch.entry_points import ENTRY_POINTS  # noqa: E402

_PROBE = (
    "import runpy, sys\n"
    "sys.argv = [sys.argv[1], '--help']\n"
    "try:\n"
    "    runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
    "except SystemExit:\n"
    "    pass\n"
    "print('torch' in sys.modules, file=sys.stderr)\n"
)


def _seconds(cmd: list[str], repeats: int) -> tuple[float, str]:
    times, err = [], ""
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - start)
        err = done.stderr
    return statistics.median(times), err


def main() -> None:
    """Measure and print the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    bare, _ = _seconds([sys.executable, "-c", "pass"], args.repeats)
    report = {"bare_python_s": round(bare, 3), "entry_points": {}}
    for module in ENTRY_POINTS:
        seconds, err = _seconds([sys.executable, "-c", _PROBE, module], args.repeats)
        report["entry_points"][module] = {
            "help_s": round(seconds, 3),
            "ratio_to_bare_python": round(seconds / bare, 1),
            "imports_torch": err.strip().splitlines()[-1] == "True",
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
