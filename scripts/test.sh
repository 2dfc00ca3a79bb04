#!/usr/bin/env bash
# The project's test command: installs what the tests need (ONNX Runtime, and Pillow + numpy as the
# reference pipeline for the parity tests) into ./.venv, then runs every test against the real
# ONNX Runtime and real image files. Release mode: the image and inference tests run over
# thousands of images and one build profile keeps a cold run short.
# Tests on the large reference material (ROBUST_EVAL_REFERENCE, else ../shared/reference: 1000
# real ImageNet JPEGs, EfficientNet-Lite models) print "skipped: TEST: ..." where it is absent;
# CI=true or ROBUST_EVAL_REQUIRE_REFERENCE=1 makes them fail there instead.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
cargo test --release "$@"
