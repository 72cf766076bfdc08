#!/usr/bin/env bash
# Everything that needs a CUDA GPU, in one run: the gpu tests, the benchmarks on the GPU and a
# training run of the paper preset. Results (JSON, logs, checkpoint) go to OUT (default
# gpu_results/). About 10 minutes on one H100; run it from the repository root with the package
# importable (`pip install -e ".[test]"`).
#
#   scripts/gpu_check.sh [OUT] [TRAIN_STEPS]
set -uo pipefail
out=${1:-gpu_results}
steps=${2:-1500}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
status=0
step() {  # step NAME COMMAND...: run, log to OUT/NAME.log, remember a failure, go on
    local name=$1
    shift
    echo "== $name: $*"
    local t0=$SECONDS
    "$@" 2>&1 | tee "$out/$name.log"
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc after $((SECONDS - t0)) s"
    [ "$rc" -eq 0 ] || status=1
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
step tests "$py" -m pytest -m gpu -q -p no:cacheprovider
step bench_localize "$py" scripts/bench_localize.py --device cuda -o "$out/bench_localize.json"
step bench_recon "$py" scripts/bench_recon.py --device cuda -o "$out/bench_recon.json"
step bench_live "$py" scripts/bench_live.py --device cuda --size 256 --rates 100 200 \
    --frames 3000 -o "$out/bench_live.json"
step train_paper "$py" -m dblink_live.cli train -c configs/filaments_paper.yaml --device cuda \
    --steps "$steps" -q -o "$out/recon_filaments_paper.pt"
step eval_paper "$py" scripts/eval_recon.py --only filaments:10 \
    --weights "$out/recon_filaments_paper.pt" -o "$out/eval_paper.json"
exit $status
