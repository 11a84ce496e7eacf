#!/usr/bin/env python3
"""Before/after on a noisy machine: runs `BIN run PIPELINE` for each binary
in turn, N rounds, so drift hits every binary alike; prints min, median and
max wall time per binary. Each binary keeps its own state folder in DIR.

    python3 bench/ab.py DIR PIPELINE N BIN [BIN ...]
"""
import statistics
import subprocess
import sys
import time


def main() -> None:
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    folder, pipeline, rounds, bins = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    times = {b: [] for b in bins}
    for _ in range(rounds):
        for b in bins:
            state = "state-" + b.strip("/").replace("/", "_")
            t0 = time.perf_counter()
            subprocess.run([b, "--state-dir", state, "run", pipeline], cwd=folder, stdout=subprocess.DEVNULL, check=True)
            times[b].append(time.perf_counter() - t0)
    for b in bins:
        t = sorted(times[b])
        print(f"{b:40s} min {t[0] * 1000:8.2f}  median {statistics.median(t) * 1000:8.2f}  max {t[-1] * 1000:8.2f} ms  (n={rounds})")


if __name__ == "__main__":
    main()
