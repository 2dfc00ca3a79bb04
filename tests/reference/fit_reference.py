"""Independent reference for `robust-eval fit`: per shift, scipy's linregress of T(OOD top-1) on
T(ID top-1) with T = probit (scipy.stats.norm.ppf) or logit, on an evals.csv.

Rules (the documented ones): the ID dataset is `--id`; every other dataset without '@' is a shift;
a model's ID point for a shift is its `<id>@<shift>` row when it has one, else its `<id>` row;
accuracies are clipped to [0.01 %, 99.99 %] before transforming.

  fit_reference.py EVALS.csv probit|logit [--id imagenet] [--group standard]   → JSON on stdout
"""
import argparse
import csv
import json

import numpy as np
from scipy import stats


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("evals")
    ap.add_argument("transform", choices=["probit", "logit"])
    ap.add_argument("--id", default="imagenet")
    ap.add_argument("--group")
    a = ap.parse_args()
    acc = {}
    groups = {}
    with open(a.evals, newline="") as f:
        for r in csv.DictReader(f):
            acc[(r["model"], r["dataset"])] = float(r["top1"])
            groups[r["model"]] = r.get("group") or "standard"
    datasets = []
    for (_, d) in acc:
        if d != a.id and "@" not in d and d not in datasets:
            datasets.append(d)
    eps = 1e-4
    if a.transform == "probit":
        T = lambda p: stats.norm.ppf(np.clip(np.asarray(p) / 100.0, eps, 1 - eps))
    else:
        T = lambda p: (lambda q: np.log(q / (1 - q)))(np.clip(np.asarray(p) / 100.0, eps, 1 - eps))
    out = {}
    models = sorted(groups)
    for shift in datasets:
        xs, ys = [], []
        for m in models:
            if a.group and groups[m] != a.group:
                continue
            ood = acc.get((m, shift))
            idv = acc.get((m, f"{a.id}@{shift}"), acc.get((m, a.id)))
            if ood is None or idv is None:
                continue
            xs.append(idv)
            ys.append(ood)
        res = stats.linregress(T(xs), T(ys))
        out[shift] = {"slope": res.slope, "intercept": res.intercept, "r2": res.rvalue ** 2, "n": len(xs)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
