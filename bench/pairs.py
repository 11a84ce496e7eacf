#!/usr/bin/env python3
"""Times two commands in turn, A B A B ..., each as a whole process, and
prints min, median and max of each one's wall time and of the ratio A/B
taken pair by pair (pairing keeps the ratio meaningful when the machine's
speed drifts). Output is thrown away; a non-zero exit is reported.

    python3 bench/pairs.py [-n RUNS] [--warmup W] --vs 'COMMAND_B' -- COMMAND_A [ARG ...]
"""
import argparse
import shlex
import statistics
import subprocess
import sys
import time


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        print(f"exit {done.returncode}: {shlex.join(cmd)}", file=sys.stderr)
    return elapsed


def line(name: str, values: list[float], unit: str = "s") -> str:
    v = sorted(values)
    return f"{name:6s} min {v[0]:9.4f}  median {statistics.median(v):9.4f}  max {v[-1]:9.4f} {unit}  (n={len(v)})"


def main() -> None:
    parser = argparse.ArgumentParser(usage=__doc__)
    parser.add_argument("-n", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--vs", required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    a = args.command[1:] if args.command[:1] == ["--"] else args.command
    b = shlex.split(args.vs)
    for _ in range(args.warmup):
        timed(a)
        timed(b)
    ta, tb = [], []
    for _ in range(args.n):
        ta.append(timed(a))
        tb.append(timed(b))
    print(line("A", ta))
    print(line("B", tb))
    print(line("A/B", [x / y for x, y in zip(ta, tb)], "x"))


if __name__ == "__main__":
    main()
