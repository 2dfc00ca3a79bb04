"""Independent computation of `robust-eval estimate` over a results folder's stored predictions.

Reads predictions/<model>/<view>.parquet with pyarrow and computes, with numpy and scipy, what
estimate.csv, agreement.csv and calibration.csv should hold: ECE (15 bins, np.digitize), Brier,
AC, DoC, ATC-MC / ATC-NE (Garg et al.'s reference walk) and ALine-S / ALine-D (as
kebaek/Agreement-on-the-line computes them: pair filter, probit, OLS, np.linalg.lstsq).
Prints JSON on stdout.

usage: estimate_reference.py RESULTS_DIR
"""

import json
import os
import sys

import numpy as np
import pyarrow.parquet as pq
from scipy.stats import norm


def probit(p):
    return norm.ppf(np.clip(np.asarray(p, dtype=float), 1e-4, 1 - 1e-4))


def load(results, model, view):
    path = os.path.join(results, "predictions", model, view + ".parquet")
    if not os.path.exists(path):
        return None
    t = pq.read_table(path).to_pydict()
    if len(t["index"]) == 0 or "confidence" not in t:
        return None
    return {
        "index": np.array(t["index"], dtype=np.int64),
        "top1": np.array([ids[0] for ids in t["top5"]], dtype=np.int64),
        "correct": np.array(t["correct"], dtype=bool),
        "confidence": np.array(t["confidence"], dtype=float),
        "entropy": np.array(t["entropy"], dtype=float),
    }


def ece_brier(conf, correct):
    edges = np.linspace(0.0, 1.0, 16)
    bins = np.digitize(conf, edges[1:15], right=True)
    ece = 0.0
    for b in range(15):
        mask = bins == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - conf[mask].mean())
    brier = np.mean((conf - correct.astype(float)) ** 2)
    return ece, brier


def atc_threshold(scores, labels):
    order = np.argsort(scores, kind="stable")
    s, l = scores[order], labels[order]
    fp, fn = float(np.sum(l == 0)), 0.0
    best, thres = abs(fp - fn), 0.0
    for i in range(len(l)):
        if l[i] == 0:
            fp -= 1
        else:
            fn += 1
        if abs(fp - fn) < best:
            best, thres = abs(fp - fn), s[i]
    return thres


def agreement(a, b):
    common, ia, ib = np.intersect1d(a["index"], b["index"], return_indices=True)
    if len(common) == 0:
        return None
    return float(np.mean(a["top1"][ia] == b["top1"][ib]))


def aline(acc, id_preds, ood_preds):
    n = len(acc)
    rows, xs, ys, accs = [], [], [], []
    z_acc = probit(acc)
    for i in range(n):
        for j in range(i + 1, n):
            ai, ao = agreement(id_preds[i], id_preds[j]), agreement(ood_preds[i], ood_preds[j])
            if ai is None or ao is None:
                continue
            if 0.05 <= ai <= 0.98 and 0.05 <= ao <= 0.98:
                row = np.zeros(n)
                row[i] = row[j] = 0.5
                rows.append(row)
                xs.append(ai)
                ys.append(ao)
                accs.append(0.5 * z_acc[i] + 0.5 * z_acc[j])
    if n < 3 or len(rows) < 2:
        return None
    x, y = probit(xs), probit(ys)
    design = np.column_stack([np.ones_like(x), x])
    (bias, slope), *_ = np.linalg.lstsq(design, y, rcond=None)
    r2 = 1 - np.sum((y - bias - slope * x) ** 2) / np.sum((y - y.mean()) ** 2)
    A = np.array(rows)
    b = y + slope * (np.array(accs) - x)
    w = np.linalg.lstsq(A, b, rcond=None)[0]
    used = A.sum(axis=0) > 0
    return {
        "slope": slope,
        "intercept": bias,
        "r2": r2,
        "pairs": len(rows),
        "s": norm.cdf(slope * z_acc + bias),
        "d": [norm.cdf(w[k]) if used[k] else None for k in range(n)],
    }


def main():
    results = sys.argv[1]
    run = json.load(open(os.path.join(results, "run.json")))
    id_name = run["id"]
    models = sorted(os.listdir(os.path.join(results, "predictions")))
    views = sorted(
        {f[: -len(".parquet")] for m in models for f in os.listdir(os.path.join(results, "predictions", m))}
    )
    calibration, estimates, lines = [], [], []
    for m in models:
        for v in views:
            p = load(results, m, v)
            if p is None:
                continue
            ece, brier = ece_brier(p["confidence"], p["correct"])
            calibration.append({"model": m, "dataset": v, "ece": 100 * ece, "brier": brier,
                                "confidence": 100 * p["confidence"].mean()})
    for shift in [v for v in views if v != id_name and "@" not in v]:
        id_view = f"{id_name}@{shift}" if any(
            os.path.exists(os.path.join(results, "predictions", m, f"{id_name}@{shift}.parquet")) for m in models
        ) else id_name
        pairs = [(m, load(results, m, id_view), load(results, m, shift)) for m in models]
        pairs = [(m, a, b) for m, a, b in pairs if a is not None and b is not None]
        names = [m for m, _, _ in pairs]
        idp = [a for _, a, _ in pairs]
        ood = [b for _, _, b in pairs]
        acc = np.array([a["correct"].mean() for a in idp])
        for k, m in enumerate(names):
            a, b = idp[k], ood[k]
            est = {
                "AC": b["confidence"].mean(),
                "DoC": acc[k] - (a["confidence"].mean() - b["confidence"].mean()),
                "ATC-MC": np.mean(b["confidence"] >= atc_threshold(a["confidence"], a["correct"])),
                "ATC-NE": np.mean(-b["entropy"] >= atc_threshold(-a["entropy"], a["correct"])),
            }
            for method, value in est.items():
                estimates.append({"model": m, "dataset": shift, "method": method,
                                  "estimate": 100 * value, "top1": 100 * b["correct"].mean()})
        line = aline(acc, idp, ood)
        if line is None:
            lines.append({"dataset": shift, "refused": True})
            continue
        lines.append({"dataset": shift, "slope": line["slope"], "intercept": line["intercept"],
                      "r2": line["r2"], "pairs": line["pairs"], "refused": False})
        for k, m in enumerate(names):
            estimates.append({"model": m, "dataset": shift, "method": "ALine-S",
                              "estimate": 100 * line["s"][k], "top1": 100 * ood[k]["correct"].mean()})
            if line["d"][k] is not None:
                estimates.append({"model": m, "dataset": shift, "method": "ALine-D",
                                  "estimate": 100 * line["d"][k], "top1": 100 * ood[k]["correct"].mean()})
    json.dump({"calibration": calibration, "estimates": estimates, "agreement": lines}, sys.stdout,
              default=float)


if __name__ == "__main__":
    main()
