"""ImageNet-C metrics from an evals.csv, computed independently of robust-eval: the formulas of
Hendrycks & Dietterich 2019 with AlexNet's errors as google-research/augmix `imagenet.py` lists them
(copied here by hand, not read from robust-eval's assets). Prints JSON {model: {mce, relative_mce,
mean_error, ce: {corruption: ce}}} for models with all 75 corruption-severities.

Usage: python imagenet_c_metrics.py EVALS_CSV CLEAN_DATASET
"""
import csv
import json
import sys

CORRUPTIONS = [
    'gaussian_noise', 'shot_noise', 'impulse_noise', 'defocus_blur', 'glass_blur', 'motion_blur',
    'zoom_blur', 'snow', 'frost', 'fog', 'brightness', 'contrast', 'elastic_transform', 'pixelate',
    'jpeg_compression'
]
ALEXNET_ERR = [
    0.886428, 0.894468, 0.922640, 0.819880, 0.826268, 0.785948, 0.798360, 0.866816, 0.826572,
    0.819324, 0.564592, 0.853204, 0.646056, 0.717840, 0.606500
]
ALEXNET_CLEAN_ERR = 1 - 0.56522  # torchvision's acc@1 for the weights hendrycks/robustness loads


def main(path, clean_dataset):
    acc = {}
    with open(path, newline='') as f:
        for row in csv.DictReader(f):
            acc[(row['model'], row['dataset'])] = float(row['top1']) / 100.0
    models = sorted({m for m, _ in acc})
    out = {}
    for m in models:
        try:
            errs = {c: [1 - acc[(m, f'imagenet-c-{c}-{s}')] for s in range(1, 6)] for c in CORRUPTIONS}
        except KeyError:
            continue
        clean_err = 1 - acc[(m, clean_dataset)]
        ce = {c: 100 * (sum(errs[c]) / 5) / a for c, a in zip(CORRUPTIONS, ALEXNET_ERR)}
        rel = {c: 100 * (sum(errs[c]) / 5 - clean_err) / (a - ALEXNET_CLEAN_ERR)
               for c, a in zip(CORRUPTIONS, ALEXNET_ERR)}
        out[m] = {
            'mce': sum(ce.values()) / 15,
            'relative_mce': sum(rel.values()) / 15,
            'mean_error': 100 * sum(sum(errs[c]) / 5 for c in CORRUPTIONS) / 15,
            'ce': ce,
        }
    print(json.dumps(out))


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2])
