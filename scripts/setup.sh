#!/usr/bin/env bash
# Make ONNX Runtime available to robust-eval without any binary download by the build: if no
# libonnxruntime is found (ORT_DYLIB_PATH, or an onnxruntime wheel in ./.venv), create ./.venv and
# install the onnxruntime wheel from PyPI into it. robust-eval finds ./.venv by itself.
# The build compiles libjpeg-turbo (PIL's JPEG decoder) from source and needs cmake and nasm: when
# they are missing, they are installed from the system's packages (apt-get, as root), or named.
#
#   scripts/setup.sh            runtime only
#   scripts/setup.sh --test     also Pillow, numpy, scipy, onnx, PyYAML, kubernetes-validate and
#                               pyarrow: the reference pipeline, fit and weight-mixing references
#                               for the tests, a reader of the Kubernetes manifests and the API's
#                               schemas, and a Parquet reader for the estimate reference
#   scripts/setup.sh --gpu      onnxruntime-gpu instead of onnxruntime (CUDA / TensorRT providers)
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
package="onnxruntime>=1.24"
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    --gpu) package="onnxruntime-gpu>=1.24" ;;
    *) echo "usage: scripts/setup.sh [--test] [--gpu]" >&2; exit 2 ;;
  esac
done

missing_tools=()
for tool in cmake nasm; do
  command -v "$tool" >/dev/null || missing_tools+=("$tool")
done
if [ ${#missing_tools[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${missing_tools[*]} (to build libjpeg-turbo) with apt-get"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing_tools[@]}" >/dev/null
  else
    echo "setup: the build needs ${missing_tools[*]} (libjpeg-turbo is compiled from source);" \
      "install them with your system's package manager, e.g. sudo apt-get install ${missing_tools[*]}" >&2
    exit 2
  fi
fi

python=${PYTHON:-python3}
if ! command -v "$python" >/dev/null; then
  echo "setup: python3 is needed to install the onnxruntime wheel (or set ORT_DYLIB_PATH to libonnxruntime.so)" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi

have_ort() { ls .venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so* >/dev/null 2>&1; }

packages=()
if [ -n "${ORT_DYLIB_PATH:-}" ] && [ -f "$ORT_DYLIB_PATH" ]; then
  echo "setup: using ORT_DYLIB_PATH=$ORT_DYLIB_PATH"
elif ! have_ort; then
  packages+=("$package")
fi
if [ "$want_test" = 1 ]; then
  .venv/bin/python -c "import PIL, numpy, scipy" 2>/dev/null || packages+=("pillow" "numpy" "scipy")
  .venv/bin/python -c "import yaml" 2>/dev/null || packages+=("pyyaml")
  .venv/bin/python -c "import onnx" 2>/dev/null || packages+=("onnx")
  # The Kubernetes API's own schemas, per version, to validate the manifests against.
  .venv/bin/python -c "import kubernetes_validate" 2>/dev/null || packages+=("kubernetes-validate")
  .venv/bin/python -c "import pyarrow" 2>/dev/null || packages+=("pyarrow")
  have_ort || .venv/bin/python -c "import onnxruntime" 2>/dev/null || [[ " ${packages[*]} " == *" $package "* ]] || packages+=("$package")
fi
if [ ${#packages[@]} -gt 0 ]; then
  echo "setup: installing ${packages[*]} into .venv"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "${packages[@]}"
fi
have_ort || [ -n "${ORT_DYLIB_PATH:-}" ] || { echo "setup: onnxruntime did not install" >&2; exit 2; }
echo "setup: ONNX Runtime ready"
