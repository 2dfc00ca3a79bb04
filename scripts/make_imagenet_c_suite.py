#!/usr/bin/env python3
"""Write suites/imagenet-c.toml from assets/corruptions/imagenet-c.tsv (run from the repo root).

A unit test (input::suite) checks the shipped suite lists exactly the table's corruptions."""
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
HEADER = (ROOT / "suites" / "imagenet-c.toml").read_text().split("\n[datasets.imagenet-c-")[0]


def main():
    rows = [l.split("\t") for l in (ROOT / "assets/corruptions/imagenet-c.tsv").read_text().splitlines()[1:]]
    out = [HEADER]
    for name, family, in_mce, _ in rows:
        if name == "clean":
            continue
        kind = "benchmark" if in_mce == "true" else "extra, never in mCE"
        for s in range(1, 6):
            out.append(
                f'\n[datasets.imagenet-c-{name}-{s}]\nmanifest = "imagenet-c/{name}/{s}/manifest.csv"\n'
                f'scoring = "imagenet-1k"\noptional = true\nresize = "none"\n'
                f'description = "ImageNet-C {name} ({family}, {kind}), severity {s}"\n'
            )
    (ROOT / "suites" / "imagenet-c.toml").write_text("".join(out))


if __name__ == "__main__":
    main()
