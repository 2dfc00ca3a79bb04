#!/usr/bin/env python3
"""Convert two published ImageNet accuracy tables into robust-eval "baseline clouds".

What
----
Reads published per-model top-1 accuracies and writes them in the long form of
robust-eval's ``evals.csv`` (header ``model,group,dataset,top1``, top-1 in
percent, copied as the unmodified source text), one row per (model, dataset):

* ``assets/baselines/timm.csv``    -- timm's published validation results
* ``assets/baselines/testbed.csv`` -- the ImageNet robustness testbed
  (Taori et al. 2020, "Measuring robustness to natural distribution shifts")
* ``assets/baselines/SOURCES.md``  -- provenance, rules, row counts, sha256

Rows are sorted by model (plain code-point order) then by dataset in this
order: imagenet, imagenetv2-matched-frequency, imagenet-sketch, imagenet-r,
imagenet@imagenet-r, objectnet, imagenet@objectnet, imagenet-a,
imagenet@imagenet-a.  ``imagenet@<shift>`` is the ImageNet-val point restricted
to the classes of ``<shift>`` (the ID x-coordinate for 200-class / ObjectNet
class-restricted comparisons).

Sources (read-only, see the SOURCES.md in each directory)
--------------------------------------------------------
``<reference>/timm-results/``  huggingface/pytorch-image-models ``results/``
    (snapshot aa4b5850c1543fa488abf260f18390eda46cf85d; results CSVs last
    changed in 4e5207c7bb6592474ca56e28b2cf85be8f1a550f, 2025-10-30).
``<reference>/published/``  modestyachts/imagenet-testbed @0170eec:
    ``robustness_top1s.csv`` and ``plotting/model_types.py`` (as data).

timm rules
----------
File -> dataset: results-imagenet.csv -> imagenet;
results-imagenetv2-matched-frequency.csv -> imagenetv2-matched-frequency;
results-sketch.csv -> imagenet-sketch; results-imagenet-r.csv -> imagenet-r;
results-imagenet-r-clean.csv -> imagenet@imagenet-r;
results-imagenet-a.csv -> imagenet-a;
results-imagenet-a-clean.csv -> imagenet@imagenet-a.  (results-imagenet-real
is skipped.)  R and A (and their -clean files) are scored 200-way by timm.

Model name = ``<model>@<img_size>``: timm repeats names across resolutions and
(model, img_size) is the unique key.  Rows are matched across files on that
key; a key missing from a file simply has no row for that dataset (e.g.
``resnet50.tv_in1k@224`` has no imagenet-a row, and
``resmlp_24_224.fb_dino@224`` has *only* an imagenet-a row).

Group: ``more-data`` if any token of the full timm name (architecture and
pretrained tag, split on ``.`` and ``_``) matches ``MORE_DATA_TOKEN`` below,
otherwise ``standard``.  The tokens, chosen after listing every tag in the
2025-10-30 files, are:

* ImageNet-21k/22k/12k: ``in21k``, ``in22k``, ``in12k`` (also old-style
  ``in21ft1k``/``in22ft1k``); covers ``mim_in22k``, ``indomain_in22k``,
  ``in1k_ft_in22k_in1k``, ``sw_in12k``, ``sbb_in12k``, ``lion_in12k`` ...
* image-text / web data: ``laion*`` (laion2b, laiona), ``openai``, ``clip``
  (incl. architecture names ``*_clip_*`` and EVA ``clip_ft_in1k``),
  ``siglip*``, ``webli``, ``dfn*``, ``datacomp*``, ``metaclip*``, ``merged*``,
  ``m30m``/``m38m`` (EVA Merged-30M/38M);
* Instagram / JFT / YFCC / SEER / SWAG: ``ig``, ``ig<N>b`` (ig1b), ``wsl``,
  ``swsl``, ``ssl`` (fb_ssl_yfcc100m), ``yfcc*``, ``jft*`` (Noisy Student
  ``ns_jft``), ``seer``, ``swag``;
* Baidu SSLD distillation: ``ssld`` (tag or architecture name, e.g.
  ``hrnet_w18_ssld``, ``hgnet_*.ssld_in1k``, ``hgnetv2_*.ssld_stage2_ft_in1k``)
  and ``6m`` (``bd_ssld_6m``): PaddleClas' SSLD recipe distils on ~4M images
  mined from ImageNet-22k plus ImageNet-1k train, i.e. more than ImageNet-1k
  images (a judgement call: some timm model cards list only ImageNet-1k).

Deliberately *not* more-data: ``sw_`` (timm's own "Ross Wightman" trainings,
e.g. ``sw_in1k``; ``sw_in12k`` is caught by ``in12k``), distillation from a
teacher on ImageNet-1k images only (``*_dist*``, ``goog_distilled_in1k`` for
BiT-S R50x1 whose teacher was in21k-pretrained, ``usi_in1k``, ``snap_dist``,
``apple_dist``), self-supervised on ImageNet-1k (``mae_in1k``, ``fcmae``
without in22k, ``beitv2 ... in1k_ft_in1k``, ``fb_dino``), adversarial /
AdvProp training (``tf_adv``, ``tf_ens_adv``, ``ap``).

Testbed rules
-------------
Columns -> dataset: val -> imagenet; imagenetv2-matched-frequency-format-val ->
imagenetv2-matched-frequency; imagenet-sketch -> imagenet-sketch; imagenet-r ->
imagenet-r; val-on-imagenet-r-classes -> imagenet@imagenet-r;
objectnet-1.0-beta -> objectnet; val-on-objectnet-classes ->
imagenet@objectnet; imagenet-a -> imagenet-a; val-on-imagenet-a-classes ->
imagenet@imagenet-a.  Empty cells are skipped.  Group = slug of
``natural_shift_type`` in imagenet_testbed_model_types.csv: "Standard
training" -> standard, "Robustness intervention" -> robust-intervention,
"Trained with more data" -> more-data, any other value lower-cased with
spaces -> '-' (e.g. low-accuracy-cnn); models without a type -> unknown.

How to run
----------
From the repository root::

    .venv/bin/python scripts/convert_baselines.py [--reference DIR] [--out DIR]

``--reference`` defaults to ``../shared/reference`` relative to the repository
root, ``--out`` to ``assets/baselines``.  Only the standard library is used;
the output is byte-for-byte deterministic for the same inputs (no timestamps).
The timm inputs are checked against the sha256 listed in the reference
SOURCES.md; a mismatch is reported as a warning (the numbers in the generated
SOURCES.md would then describe the new inputs).
"""

import argparse
import collections
import csv
import hashlib
import io
import os
import re
import sys

HEADER = ["model", "group", "dataset", "top1"]

DATASET_ORDER = [
    "imagenet",
    "imagenetv2-matched-frequency",
    "imagenet-sketch",
    "imagenet-r",
    "imagenet@imagenet-r",
    "objectnet",
    "imagenet@objectnet",
    "imagenet-a",
    "imagenet@imagenet-a",
]
DATASET_RANK = {d: i for i, d in enumerate(DATASET_ORDER)}

TIMM_FILES = [  # (file, dataset), in output dataset order
    ("results-imagenet.csv", "imagenet"),
    ("results-imagenetv2-matched-frequency.csv", "imagenetv2-matched-frequency"),
    ("results-sketch.csv", "imagenet-sketch"),
    ("results-imagenet-r.csv", "imagenet-r"),
    ("results-imagenet-r-clean.csv", "imagenet@imagenet-r"),
    ("results-imagenet-a.csv", "imagenet-a"),
    ("results-imagenet-a-clean.csv", "imagenet@imagenet-a"),
]

# sha256 of the timm inputs as listed in <reference>/timm-results/SOURCES.md.
TIMM_SHA256 = {
    "results-imagenet.csv": "30972bf7c7ab451bbd4480ec6116b13d0a84441c57bbc946896fd312264acfcd",
    "results-imagenetv2-matched-frequency.csv": "1d066d8897c40224b14f3cf1d02029c49ebdc56b761ba9a3841bd3bdd3bd0a8e",
    "results-sketch.csv": "f3176de38d4a26aa808b3d0cc1fee4261268d70b2be7c9d43e65cb03b3864f46",
    "results-imagenet-r.csv": "2dcc1f3dea098ffc1080ad04309b11477646f6f25837b041ce6075610f863209",
    "results-imagenet-a.csv": "89471dcea0cd98b56211e2b808cb6bbf7b3c8bb4fe691ba58fec1f198e3fcf91",
    "results-imagenet-r-clean.csv": "ce531f6b5d2471f98a1029dae76f683b9ccf69d1d5b54ee09d78c4d530e2bb9c",
    "results-imagenet-a-clean.csv": "9146fe8f640dffec93fc7b0052aff2bc38f9de6627cab06117bdf9f43496c162",
}

TESTBED_TOP1S = "imagenet_testbed_robustness_top1s.csv"
TESTBED_TYPES = "imagenet_testbed_model_types.csv"
TESTBED_COLUMNS = [  # (column, dataset)
    ("val", "imagenet"),
    ("imagenetv2-matched-frequency-format-val", "imagenetv2-matched-frequency"),
    ("imagenet-sketch", "imagenet-sketch"),
    ("imagenet-r", "imagenet-r"),
    ("val-on-imagenet-r-classes", "imagenet@imagenet-r"),
    ("objectnet-1.0-beta", "objectnet"),
    ("val-on-objectnet-classes", "imagenet@objectnet"),
    ("imagenet-a", "imagenet-a"),
    ("val-on-imagenet-a-classes", "imagenet@imagenet-a"),
]
TESTBED_GROUPS = {
    "Standard training": "standard",
    "Robustness intervention": "robust-intervention",
    "Trained with more data": "more-data",
}

# One token of a timm name (split on '.' and '_') that marks pre-training or
# training on more than ImageNet-1k images.  See the module docstring.
MORE_DATA_TOKEN = re.compile(
    r"^(?:"
    r"in21k|in22k|in12k|in21ft1k|in22ft1k"
    r"|laion\w*|openai|clip|siglip\d*|webli|dfn\w*|datacomp\w*|metaclip\w*|merged\w*|m30m|m38m"
    r"|ig|ig\d+b|wsl|swsl|ssl|yfcc\w*|jft\w*|seer|swag"
    r"|ssld|6m"
    r")$"
)


def timm_group(name):
    """'more-data' or 'standard' for a timm model name (arch.pretrained_tag)."""
    tokens = re.split(r"[._]", name)
    return "more-data" if any(MORE_DATA_TOKEN.match(t) for t in tokens) else "standard"


def testbed_group(natural_shift_type):
    if natural_shift_type is None or not natural_shift_type.strip():
        return "unknown"
    t = natural_shift_type.strip()
    if t in TESTBED_GROUPS:
        return TESTBED_GROUPS[t]
    return re.sub(r"\s+", "-", t.lower())


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def check_top1(text, where):
    """Validate (but never rewrite) a top-1 cell: a number in [0, 100]."""
    v = float(text)
    if not (0.0 <= v <= 100.0):
        raise SystemExit(f"{where}: top1 {text!r} outside [0, 100]")


def sort_rows(rows):
    rows.sort(key=lambda r: (r[0], DATASET_RANK[r[2]]))
    seen = set()
    for r in rows:
        key = (r[0], r[2])
        if key in seen:
            raise SystemExit(f"duplicate (model, dataset): {key}")
        seen.add(key)
    return rows


def convert_timm(timm_dir, notes):
    rows = []
    per_file = {}
    keys_by_file = {}
    for fname, dataset in TIMM_FILES:
        path = os.path.join(timm_dir, fname)
        digest = sha256_file(path)
        if digest != TIMM_SHA256[fname]:
            print(f"warning: {fname} sha256 {digest} differs from reference SOURCES.md",
                  file=sys.stderr)
        per_file[fname] = digest
        keys = set()
        for i, r in enumerate(read_csv(path), start=2):
            model = r["model"].strip()
            size = r["img_size"].strip()
            top1 = r["top1"].strip()
            if not model or not size or not top1:
                raise SystemExit(f"{fname}:{i}: empty model/img_size/top1")
            key = f"{model}@{size}"
            if key in keys:
                raise SystemExit(f"{fname}:{i}: duplicate key {key}")
            keys.add(key)
            check_top1(top1, f"{fname}:{i}")
            rows.append((key, timm_group(model), dataset, top1))
        keys_by_file[fname] = keys
    base = keys_by_file["results-imagenet.csv"]
    sizes = collections.Counter(k.rsplit("@", 1)[0] for k in base)
    stats = {"timm_names": len(sizes), "timm_repeated": sum(1 for c in sizes.values() if c > 1)}
    for fname, _ in TIMM_FILES[1:]:
        missing = sorted(base - keys_by_file[fname])
        extra = sorted(keys_by_file[fname] - base)
        if missing or extra:
            notes.append(f"`{fname}` vs `results-imagenet.csv`: missing {missing or 'none'}, "
                         f"extra {extra or 'none'}")
    return sort_rows(rows), per_file, stats


def convert_testbed(pub_dir, notes):
    top1s_path = os.path.join(pub_dir, TESTBED_TOP1S)
    types_path = os.path.join(pub_dir, TESTBED_TYPES)
    types = {}
    for r in read_csv(types_path):
        types[r["model"].strip()] = r["natural_shift_type"]
    rows = []
    no_type = []
    no_rows = []
    table = read_csv(top1s_path)
    header = table[0].keys() if table else []
    for col, _ in TESTBED_COLUMNS:
        if col not in header:
            raise SystemExit(f"{TESTBED_TOP1S}: missing column {col}")
    for i, r in enumerate(table, start=2):
        model = r["model"].strip()
        group = testbed_group(types.get(model))
        if model not in types:
            no_type.append(model)
        n = 0
        for col, dataset in TESTBED_COLUMNS:
            cell = (r[col] or "").strip()
            if not cell:
                continue
            check_top1(cell, f"{TESTBED_TOP1S}:{i}:{col}")
            rows.append((model, group, dataset, cell))
            n += 1
        if n == 0:
            no_rows.append(model)
    notes.append(f"testbed models without a type (group `unknown`): {len(no_type)}"
                 + (f" ({', '.join(sorted(no_type))})" if no_type else ""))
    notes.append(f"testbed models with no value in any of the nine columns (no rows): "
                 f"{len(no_rows)}" + (f" ({', '.join(sorted(no_rows))})" if no_rows else ""))
    digests = {TESTBED_TOP1S: sha256_file(top1s_path), TESTBED_TYPES: sha256_file(types_path)}
    return sort_rows(rows), digests


def write_csv(path, rows):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEADER)
    w.writerows(rows)
    data = buf.getvalue().encode("utf-8")
    with open(path, "wb") as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest()


def count_table(rows):
    """Markdown table: rows per dataset x group (+ totals)."""
    groups = sorted({r[1] for r in rows})
    datasets = [d for d in DATASET_ORDER if any(r[2] == d for r in rows)]
    c = collections.Counter((r[2], r[1]) for r in rows)
    lines = ["| dataset | " + " | ".join(groups) + " | total |",
             "|---|" + "---:|" * (len(groups) + 1)]
    for d in datasets:
        cells = [str(c[(d, g)]) for g in groups]
        lines.append(f"| {d} | " + " | ".join(cells) + f" | {sum(c[(d, g)] for g in groups)} |")
    totals = [str(sum(c[(d, g)] for d in datasets)) for g in groups]
    lines.append("| **all rows** | " + " | ".join(totals) + f" | {len(rows)} |")
    models = {}
    for r in rows:
        models[r[0]] = r[1]
    mc = collections.Counter(models.values())
    lines.append("| *models* | " + " | ".join(str(mc[g]) for g in groups)
                 + f" | {len(models)} |")
    return "\n".join(lines)


SOURCES_TEMPLATE = """\
# Baseline clouds: provenance

Generated by `scripts/convert_baselines.py` (do not edit by hand; re-run the script).
Both files use the long form of `evals.csv`: header `model,group,dataset,top1`, `top1` in
percent (0-100) copied as the unmodified source text, one row per (model, dataset), sorted by
model (code-point order) then dataset in the order imagenet, imagenetv2-matched-frequency,
imagenet-sketch, imagenet-r, imagenet@imagenet-r, objectnet, imagenet@objectnet, imagenet-a,
imagenet@imagenet-a. `imagenet@<shift>` is ImageNet val restricted to the classes of `<shift>`
(the in-distribution x-coordinate for that shift).

| output | rows (excl. header) | models | sha256 |
|---|---:|---:|---|
| `timm.csv` | {timm_rows} | {timm_models} | `{timm_sha}` |
| `testbed.csv` | {tb_rows} | {tb_models} | `{tb_sha}` |

## timm.csv

Source: repository **huggingface/pytorch-image-models** (timm), path `results/<file>`,
snapshot commit `aa4b5850c1543fa488abf260f18390eda46cf85d`; every results CSV used was last
changed in commit `4e5207c7bb6592474ca56e28b2cf85be8f1a550f` (2025-10-30, "Update result csvs
(#2603)"). Copied byte for byte into `reference/timm-results/` (see its SOURCES.md).
Licence: none is stated in the reference SOURCES.md; the repository is distributed under the
Apache License 2.0 (its `LICENSE` file).

| input file | dataset | sha256 |
|---|---|---|
{timm_inputs}

- `results-imagenet-real.csv` is not used.
- ImageNet-R and ImageNet-A (and their `-clean` ImageNet-val counterparts, 50 x 200 = 10,000
  images) are scored **200-way** by timm (only the 200 logits of the test classes are kept).
- `model` = `<timm model name>@<img_size>`: timm repeats names across resolutions
  ({timm_repeated} of the {timm_names} names in `results-imagenet.csv` appear at 2+ sizes);
  (model, img_size) is unique. Rows are matched across files on it; a key
  missing from a file has no row for that dataset.
- `group`: `more-data` if any `.`/`_`-separated token of the timm name (architecture and
  pretrained tag) is one of: `in21k`, `in22k`, `in12k`, `in21ft1k`, `in22ft1k`, `laion*`,
  `openai`, `clip`, `siglip*`, `webli`, `dfn*`, `datacomp*`, `metaclip*`, `merged*`, `m30m`,
  `m38m`, `ig`, `ig<N>b`, `wsl`, `swsl`, `ssl`, `yfcc*`, `jft*`, `seer`, `swag`, `ssld`, `6m`;
  otherwise `standard`. SSLD models (`ssld`, `bd_ssld_6m`, `hrnet_*_ssld`) count as more-data
  because PaddleClas' SSLD distils on ~4M images mined from ImageNet-22k (judgement call).
  Not more-data: `sw_` (timm's own trainings; `sw_in12k` is caught by `in12k`), distillation
  from a teacher on ImageNet-1k images only (`dist`, `goog_distilled_in1k`, `usi_in1k`),
  ImageNet-1k self-supervised pre-training (`mae_in1k`, `fcmae_ft_in1k`, `beitv2 in1k_ft_in1k`,
  `fb_dino`), adversarial/AdvProp training.
- Every timm model has an ImageNet-1k classifier head (no zero-shot rows); tiny `test_*`
  models are included.

Rows per dataset and group:

{timm_counts}

## testbed.csv

Source: repository **modestyachts/imagenet-testbed**, commit `0170eec` (as given in the
reference SOURCES.md): `robustness_top1s.csv` (copied as
`reference/published/imagenet_testbed_robustness_top1s.csv`) and the `nat_model_types_map` of
`plotting/model_types.py` (extracted as data to
`reference/published/imagenet_testbed_model_types.csv`, column `natural_shift_type`).
Licence: none is stated in the reference SOURCES.md; the repository is distributed under the
MIT License (its `LICENSE` file).

| input file | sha256 |
|---|---|
{tb_inputs}

| column | dataset |
|---|---|
{tb_columns}

- Empty cells are skipped.
- `group` = slug of `natural_shift_type`: "Standard training" -> `standard`, "Robustness
  intervention" -> `robust-intervention` (includes the Lp-adversarially-robust models, as in
  the testbed's natural-shift plots), "Trained with more data" -> `more-data`, others
  lower-cased with spaces -> `-` (`low-accuracy-cnn`, `random-features`, ...); no type ->
  `unknown`. The testbed fits its line on `standard` models only.
- `more-data` here includes two zero-shot CLIP models (`resnet50_clip_zeroshot`,
  `vit_b_32_clip_zeroshot`); timm.csv has no zero-shot rows.
- `resnet50` on `imagenet-a` is exactly `0.0` (ImageNet-A was collected by adversarial
  filtering against ResNet-50), so a probit fit must clip it; ImageNet-R/A columns are
  200-class, matching timm (ResNet-50 on imagenet-r: 36.17 here, 36.157 in timm).

Rows per dataset and group:

{tb_counts}

## Notes

{notes}
"""


def main():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference", default=os.path.join(repo, "..", "shared", "reference"),
                    help="directory holding timm-results/ and published/ "
                         "(default: ../shared/reference relative to the repository)")
    ap.add_argument("--out", default=os.path.join(repo, "assets", "baselines"),
                    help="output directory (default: assets/baselines)")
    args = ap.parse_args()

    notes = []
    timm_rows, timm_digests, timm_stats = convert_timm(os.path.join(args.reference, "timm-results"), notes)
    tb_rows, tb_digests = convert_testbed(os.path.join(args.reference, "published"), notes)

    zeros = [f"{r[0]} / {r[2]}" for r in timm_rows + tb_rows if float(r[3]) == 0.0]
    notes.append("top1 exactly 0 (probit = -inf; clip before fitting): "
                 + (", ".join(zeros) if zeros else "none"))
    hundreds = [f"{r[0]} / {r[2]}" for r in timm_rows + tb_rows if float(r[3]) == 100.0]
    notes.append("top1 exactly 100: " + (", ".join(hundreds) if hundreds else "none"))

    os.makedirs(args.out, exist_ok=True)
    timm_sha = write_csv(os.path.join(args.out, "timm.csv"), timm_rows)
    tb_sha = write_csv(os.path.join(args.out, "testbed.csv"), tb_rows)

    text = SOURCES_TEMPLATE.format(
        timm_rows=len(timm_rows), timm_models=len({r[0] for r in timm_rows}), timm_sha=timm_sha,
        tb_rows=len(tb_rows), tb_models=len({r[0] for r in tb_rows}), tb_sha=tb_sha,
        timm_inputs="\n".join(f"| `{f}` | `{d}` | `{timm_digests[f]}` |" for f, d in TIMM_FILES),
        timm_counts=count_table(timm_rows),
        tb_inputs="\n".join(f"| `{f}` | `{h}` |" for f, h in sorted(tb_digests.items())),
        tb_columns="\n".join(f"| `{c}` | `{d}` |" for c, d in TESTBED_COLUMNS),
        tb_counts=count_table(tb_rows),
        notes="\n".join(f"- {n}" for n in notes),
        **timm_stats,
    )
    with open(os.path.join(args.out, "SOURCES.md"), "wb") as f:
        f.write(text.encode("utf-8"))

    print(f"timm.csv     {len(timm_rows)} rows  sha256 {timm_sha}")
    print(f"testbed.csv  {len(tb_rows)} rows  sha256 {tb_sha}")
    for n in notes:
        print("note:", n)


if __name__ == "__main__":
    main()
