#!/usr/bin/env bash
# The export tier: tests of scripts/export_timm.py, export_torchvision.py and export_open_clip.py
# (and their shared scripts/export_common.py) against the real robust-eval binary
# (tests/export/test_export.py). Not part of scripts/test.sh: it needs its own Python packages
# (scripts/requirements-export.txt: torch, torchvision, timm, open_clip_torch, onnx, onnxruntime,
# pyarrow, pytest), installed here into ./.venv-export.
#
#   scripts/test_export.sh [PYTEST ARGS...]
#
# The venv is reused while scripts/requirements-export.txt is unchanged (a hash is kept in it).
# A fresh install takes about 2.5 minutes and 5.8 GB: torch from PyPI brings the CUDA libraries
# (nvidia-*, triton). They cannot be left out: libtorch.so links against libcudart, cuBLAS,
# cuDNN, NCCL ... and `import torch` fails without them; PyTorch's CPU-only wheels live only on
# its own package index, not on PyPI.
# Builds robust-eval (cargo build --release) unless ROBUST_EVAL_BIN names a binary. No network is
# needed besides PyPI for the install: the tests export randomly initialised models.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
venv=.venv-export
requirements=scripts/requirements-export.txt
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$requirements" | cut -d' ' -f1)

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "test_export: installing $requirements into $venv (torch with its CUDA libraries: a few GB)"
  start=$SECONDS
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  echo "$want" >"$stamp"
  echo "test_export: installed in $((SECONDS - start)) s"
fi

if [ -z "${ROBUST_EVAL_BIN:-}" ]; then
  cargo build --release
  export ROBUST_EVAL_BIN="$PWD/target/release/robust-eval"
fi
# robust-eval uses the ONNX Runtime of the venv unless ORT_DYLIB_PATH is set (the test sets it).
export PYTHONDONTWRITEBYTECODE=1
exec "$venv/bin/python" -m pytest -p no:cacheprovider -v tests/export "$@"
