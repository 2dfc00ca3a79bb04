#!/usr/bin/env python3
"""Mean absolute error (pp) of each estimator against the measured top-1, per shift and over all
shifts, from one or more estimates.csv files written by `robust-eval estimate` (labelled shifts
only; rows without a measured top-1 are skipped). Prints a Markdown table.

Usage: scripts/estimate_mae.py RESULTS/estimates.csv [...]
"""
import csv
import sys
from collections import defaultdict

METHODS = ["AC", "DoC", "ATC-MC", "ATC-NE", "ALine-S", "ALine-D"]


def main():
    errors = defaultdict(list)
    shifts = []
    for path in sys.argv[1:]:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row["error"] == "":
                    continue
                if row["dataset"] not in shifts:
                    shifts.append(row["dataset"])
                errors[(row["method"], row["dataset"])].append(abs(float(row["error"])))
    print("| method | " + " | ".join(shifts) + " | all shifts |")
    print("|---|" + "---:|" * (len(shifts) + 1))
    for m in METHODS:
        cells = []
        every = []
        for s in shifts:
            e = errors.get((m, s), [])
            every += e
            cells.append(f"{sum(e) / len(e):.2f}" if e else "–")
        cells.append(f"{sum(every) / len(every):.2f}" if every else "–")
        print(f"| {m} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
