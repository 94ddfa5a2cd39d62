#!/usr/bin/env bash
# A short CUDA check on a GPU machine whose python3 already has a CUDA build of JAX, Equinox and Optax
# (no network there, so the package is used from the source tree). Writes logs and JSON under $OUT.
#   1. float64 correctness on the GPU: a cross-section of tests/test_engines.py (every engine vs BPTT);
#   2. engine timing on the GPU: the 3-layer LIF, 256 units, batch 32, T = 500, float32;
#   3. a short online training run (learner, checkpoint, plots) on the GPU.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import jax, equinox, optax; print('jax', jax.__version__, jax.devices(), 'equinox', equinox.__version__, 'optax', optax.__version__)" | tee -a "$OUT/gpu.txt"
timeout 240 python3 -m pytest -q -p no:cacheprovider -p no:benchmark tests/test_engines.py \
  -k "rtrl_equals_bptt and (lif-2 or alif-3) or exact_without and (3-leaky or 4-linear-mse) or one_layer or lower_layers or chunked or grow" \
  2>&1 | tail -n 25 | tee "$OUT/tests.log"
for model in exact factorisable; do
  timeout 150 python3 -m deepeprop.cli bench --engines bptt,eprop,deep_eprop_factored --T 500 --width 256 --depth 3 \
    --batch 32 --model "$model" --readout linear --repeats 5 --json "$OUT/bench_$model.json" 2>&1 | tee "$OUT/bench_$model.log"
done
timeout 120 python3 -m deepeprop.cli train --task digits --method deep_eprop --neuron alif --hidden 32,32 \
  --iterations 100 --eval-every 50 --no-progress --out /tmp/gpu_train 2>&1 | tail -n 8 | tee "$OUT/train.log"
cp /tmp/gpu_train/summary.json "$OUT/train_summary.json" 2>/dev/null || true
