#!/usr/bin/env python3
"""Suggest heuristic symbol weights from labelled scans, the way SpamAssassin derives its scores.

Input: `mailsift scan --json` lines for the SpamAssassin corpus folders (for the classifier grades, scans of
held-out folds of TRAIN by models trained on the other folds, so the grades are as honest as on new mail) (the folder name gives the label:
`*ham*` is ham, `spam*` is spam). Only TRAIN files of the standard split (md5 first hex digit 4-f) are used.
Fits non-negative weights w (no intercept: the tag threshold plays that part) minimising a logistic loss on
(score - tag) / T, with false positives weighted `--ham-cost` times more than misses and an L2 pull towards
the current weights. Prints a TOML [weights] table; a person decides what to adopt.

    pip install numpy
    for d in easy-ham-1 easy-ham-2 hard-ham-1 spam-1 spam-2; do mailsift scan --json $CORPUS/$d; done > scans.jsonl
    python3 tools/fit_weights.py scans.jsonl
"""
import argparse
import json
import os
import re

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("scans")
ap.add_argument("--tag", type=float, default=5.0)
ap.add_argument("--temperature", type=float, default=1.5)
ap.add_argument("--ham-cost", type=float, default=6.0)
ap.add_argument("--l2", type=float, default=0.002)
ap.add_argument("--max-weight", type=float, default=4.0)
ap.add_argument("--fixed", default="GTUBE,MESSAGE_TRUNCATED_FOR_SCAN", help="symbols whose weight is kept")
args = ap.parse_args()

rows, labels, current = [], [], {}
for line in open(args.scans):
    d = json.loads(line)
    name = os.path.basename(d["file"])
    m = re.match(r"\d+\.([0-9a-f]{32})\.", name)
    if not m or m.group(1)[0] in "0123":
        continue
    folder = os.path.basename(os.path.dirname(d["file"]))
    labels.append(1.0 if folder.startswith("spam") else 0.0)
    syms = {}
    for s in d["verdict"]["symbols"]:
        syms[s["name"]] = 1.0
        current.setdefault(s["name"], s["score"])
    rows.append(syms)

names = sorted(current)
fixed = set(args.fixed.split(","))
idx = {n: i for i, n in enumerate(names)}
X = np.zeros((len(rows), len(names)))
for r, syms in enumerate(rows):
    for n in syms:
        X[r, idx[n]] = 1.0
y = np.array(labels)
w0 = np.array([current[n] for n in names])
w = w0.copy()
cost = np.where(y == 1, 1.0, args.ham_cost)
free = np.array([n not in fixed for n in names])
ham_side = np.array(["_HAM_" in n for n in names])
lr = 0.05
for it in range(4000):
    z = (X @ w - args.tag) / args.temperature
    p = 1 / (1 + np.exp(-np.clip(z, -30, 30)))
    grad = X.T @ ((p - y) * cost) / len(y) / args.temperature + args.l2 * (w - w0)
    step = w - lr * grad * 50
    # Evidence of ham (classifier *_HAM_* grades) may only pull the score down; everything else only up.
    step = np.where(ham_side, np.clip(step, -args.max_weight, 0.0), np.clip(step, 0.0, args.max_weight))
    w = np.where(free, step, w0)

score = X @ w
fp = ((score >= args.tag) & (y == 0)).sum()
tp = ((score >= args.tag) & (y == 1)).sum()
print(f"# TRAIN: {fp} of {int((y == 0).sum())} ham flagged, {tp} of {int(y.sum())} spam caught")
print("[weights]")
for n in names:
    if abs(w[idx[n]] - w0[idx[n]]) >= 0.05:
        print(f"{n} = {w[idx[n]]:.1f}  # was {w0[idx[n]]:.2f}")
