#!/usr/bin/env bash
# The CUDA check, on a machine with an NVIDIA GPU whose python3 has a CUDA build of JAX (pip install -e ".[cuda12]"
# or ".[cuda13]"), Equinox and Optax. The package is used from the source tree (no install, no network needed).
# Writes logs and JSON under $OUT (default /tmp/gpu_check); about 8 minutes on one GPU.
#   0. refuses to run (exit 2) unless nvidia-smi sees a GPU and JAX's default backend is that GPU;
#   1. float64 correctness on the GPU: every engine against BPTT (a cross-section of tests/test_engines.py), the
#      chunk hybrid (tests/test_chunked.py) and the training loop (tests/test_training.py, checkpoints and resume);
#   2. the speed targets suite on the GPU (deepeprop bench --suite targets: ratios to BPTT side by side, JSON);
#   3. a short online training run (learner, checkpoint, plots) on the GPU.
# The exit code is that of the first failing step (0: all passed).
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
unset JAX_PLATFORMS
fail() { echo "gpu_check: FAILED: $*" | tee -a "$OUT/summary.txt" >&2; exit 2; }

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  fail "no NVIDIA GPU visible (nvidia-smi missing or sees no GPU): run this on a GPU machine"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 - <<'EOF' 2>&1 | tee -a "$OUT/gpu.txt"
import sys
import jax, equinox, optax
backend = jax.default_backend()
print("jax", jax.__version__, "backend", backend, jax.devices(), "equinox", equinox.__version__, "optax",
      optax.__version__)
if backend != "gpu":
    sys.exit(f"gpu_check: FAILED: JAX's backend is {backend!r}, not the GPU: install JAX's CUDA wheels "
             "(pip install -e '.[cuda12]', or '.[cuda13]' with an NVIDIA driver >= 580)")
EOF
[ "${PIPESTATUS[0]}" -eq 0 ] || fail "JAX does not use the GPU (see $OUT/gpu.txt)"

status=0
step() {  # step NAME TIMEOUT COMMAND...: run, log to $OUT/NAME.log, remember the first failure
  local name=$1 limit=$2; shift 2
  local started=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local code=$?
  tail -n 30 "$OUT/$name.log"
  echo "$name: exit $code, $((SECONDS - started)) s" | tee -a "$OUT/summary.txt"
  [ "$code" -eq 0 ] || [ "$status" -ne 0 ] || status=$code
}

step tests 240 python3 -m pytest -q -p no:cacheprovider -p no:benchmark \
  tests/test_engines.py tests/test_chunked.py tests/test_training.py \
  -k "rtrl_equals_bptt and (lif-2 or alif-3) or exact_without and (3-leaky or 4-linear-mse) or one_layer or lower_layers or chunked or grow or test_chunked or resume or checkpoint"
step targets 300 python3 -m deepeprop.cli bench --suite targets --repeats 3 --json "$OUT/targets.json" \
  --markdown "$OUT/targets.md"
rm -rf /tmp/gpu_train
step train 90 python3 -m deepeprop.cli train --task digits --method deep_eprop --neuron alif --hidden 32,32 \
  --iterations 100 --eval-every 50 --no-progress --out /tmp/gpu_train
cp /tmp/gpu_train/summary.json "$OUT/train_summary.json" 2>/dev/null || true
cat "$OUT/summary.txt"
exit "$status"
