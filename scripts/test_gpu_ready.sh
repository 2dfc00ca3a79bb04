#!/usr/bin/env bash
# The GPU-readiness tier, for a machine without a GPU: robust-eval with onnxruntime-gpu and the
# CUDA libraries exactly as PyPI ships them (onnxruntime-gpu[cuda,cudnn], ~2.5 GB, installed by
# scripts/setup.sh --gpu into ./.venv-gpu). It checks that
#   1. `doctor` finds the NVIDIA wheels' libraries (nvidia/*/lib) and loads every one of them:
#      cuBLASLt, cuBLAS, NVRTC, cuRAND, cuFFT, the CUDA runtime and cuDNN;
#   2. the CUDA provider then fails only for want of a GPU: the driver (libcuda.so.1) or a CUDA
#      device, never another library;
#   3. `run --provider auto` falls back to the CPU, says why, and takes the CPU worker plan;
#      run.json records fp32 and the CPU provider for every pair.
# On a machine with a GPU the checks are the other way round: CUDA must be "ok", and the run on it.
#
#   scripts/test_gpu_ready.sh
#
# Builds robust-eval (cargo build --release) unless ROBUST_EVAL_BIN names a binary. Prints
# "gpu-ready tier: passed" or fails; .ci/run skips it (and says so) without ~5 GB of free disk.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv-gpu
VENV=$venv bash scripts/setup.sh --gpu
lib=$(ls "$venv"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | head -n 1)
if [ -z "${ROBUST_EVAL_BIN:-}" ]; then
  cargo build --release
  ROBUST_EVAL_BIN="$PWD/target/release/robust-eval"
fi
export ORT_DYLIB_PATH="$PWD/$lib"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

has_gpu=0
if command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
  has_gpu=1
fi

"$ROBUST_EVAL_BIN" doctor >"$work/doctor.txt"
cat "$work/doctor.txt"
"$ROBUST_EVAL_BIN" doctor --json >"$work/doctor.json"
python3 - "$work/doctor.json" "$has_gpu" <<'EOF'
import json, re, sys
report = json.load(open(sys.argv[1]))
has_gpu = sys.argv[2] == "1"
preload = report["gpu_libraries"]
assert preload and not preload.get("skipped"), f"no CUDA library was loaded: {preload}"
loaded = [p.rsplit("/", 1)[-1] for p in preload["loaded"]]
for stem in ["libcublasLt.so.", "libcublas.so.", "libnvrtc.so.", "libcurand.so.", "libcufft.so.",
             "libcudart.so.", "libcudnn.so."]:
    assert any(name.startswith(stem) for name in loaded), f"{stem}* not loaded: {loaded}"
assert not preload["failed"], f"libraries that failed to load: {preload['failed']}"
assert "nvidia" in preload["loaded"][0], preload["loaded"]
status = {p["provider"]: p for p in report["providers"]}
cuda = status["CUDAExecutionProvider"]
if has_gpu:
    assert cuda["ok"], f"CUDA on a machine with a GPU: {cuda['status']}"
else:
    assert not cuda["ok"], "CUDA cannot run without a GPU"
    text = cuda["status"]
    missing = set(re.findall(r"(lib[\w.+-]+\.so[\w.]*): cannot open shared object file", text))
    assert missing <= {"libcuda.so.1"}, f"CUDA lacks a library other than the driver: {missing}: {text}"
    for_want_of_device = missing == {"libcuda.so.1"} or re.search(
        r"no CUDA-capable device|CUDA driver|cudaErrorNoDevice|cudaErrorInsufficientDriver", text)
    assert for_want_of_device, f"CUDA failed for another reason than the missing GPU: {text}"
assert status["CPUExecutionProvider"]["ok"], status["CPUExecutionProvider"]
print(f"gpu-ready: {len(loaded)} libraries loaded from the wheels; CUDA: {cuda['status'][:160]}")
EOF

"$ROBUST_EVAL_BIN" run --suite demo --provider auto --progress plain --out "$work/run" \
  >"$work/run.out" 2>"$work/run.err" || { cat "$work/run.err"; exit 1; }
python3 - "$work" "$has_gpu" <<'EOF'
import json, sys
work, has_gpu = sys.argv[1], sys.argv[2] == "1"
err = open(f"{work}/run.err").read()
run = json.load(open(f"{work}/run/run.json"))
providers = {e["provider"] for e in run["evaluations"]}
precisions = {e["execution"]["precision"] for e in run["evaluations"]}
assert precisions == {"fp32"}, precisions
if has_gpu:
    assert all("CUDA" in p or "Tensorrt" in p for p in providers), providers
else:
    assert "CUDAExecutionProvider did not initialise" in err, err
    assert "the run uses the CPU plan" in err, err
    assert providers == {"CPUExecutionProvider"}, providers
print(f"gpu-ready: run --provider auto ran on {sorted(providers)} in {sorted(precisions)}")
EOF
echo "gpu-ready tier: passed"
