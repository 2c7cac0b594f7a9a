#!/usr/bin/env bash
# The GPU checks of issue 22, as one prepared script for a lent accelerator (bench/README: device):
#   bash bench/device_check.sh [OUTDIR]
# 1. the precision rehearsal on CUDA (bench/rehearsal.py: every method x precision x {GeN, fixed rate});
# 2. bench/gpu_check.py: NGDiff / GDiff step time and memory on a ~1B Llama in bf16-mixed, GeN's probe
#    cost (fp32 probes vs the run's precision, bf16-mixed and bf16-true), a short FSDP job.
# Missing packages (hydra, omegaconf, datasets, ...) come as wheels in .whl/ when that folder exists.
set -uo pipefail
out=${1:-${OUT:-/tmp/device_check}}
mkdir -p "$out"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1 UNLEARN_OUTPUTS=/tmp/device_outputs TQDM_DISABLE=1
nvidia-smi -L 2>/dev/null
python3 bench/rehearsal.py --json "$out/rehearsal.json" 2>"$out/rehearsal.err" | tee "$out/rehearsal.log"
python3 bench/gpu_check.py --repeats 1 2>"$out/gpu_check.err" | tee "$out/gpu_check.log"
