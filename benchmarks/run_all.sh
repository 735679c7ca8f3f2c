#!/usr/bin/env bash
# Regenerate every figure of benchmarks/README.md (CPU, about 12 minutes on 2 cores of an idle machine).
#   bash benchmarks/run_all.sh [OUT_DIR]        (default: benchmarks/results/latest)
# Runs one benchmark at a time (they would compete for the cores) and records `uptime` before each.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/results/latest}
mkdir -p "$OUT"
run() {
  local name=$1; shift
  { echo "\$ $*"; uptime; "$@" 2>&1 | grep --line-buffered -v -E "Warning|Loading weights|Writing model|image features \(" ; uptime; } | tee "$OUT/$name.txt"
}
{ lscpu | grep -E "Model name|^CPU\(s\)|Thread|Flags"; python -c "import torch; print('torch', torch.__version__, 'threads', torch.get_num_threads())"; } | tee "$OUT/machine.txt"
run tpm_mi python -u benchmarks/bench_tpm_mi.py --json "$OUT/tpm_mi.json"
run mgips_cl python -u benchmarks/bench_mgips_cl.py --json "$OUT/mgips_cl.json"
run mgips_cl_one_way python -u benchmarks/bench_mgips_cl.py --one-way --json "$OUT/mgips_cl_one_way.json"
run pipeline python -u benchmarks/bench_pipeline.py --large --json "$OUT/pipeline.json"
run training_input python -u benchmarks/bench_training_input.py --workers 0,1 --json "$OUT/training_input.json"
run tpm_mi_forloop python -u benchmarks/bench_tpm_mi.py --layers 4 --precisions bf16 --paths images --no-infer --optimizer forloop
run tpm_mi_fused python -u benchmarks/bench_tpm_mi.py --layers 4 --precisions bf16 --paths images --no-infer --optimizer fused
run tpm_mi_vit_eager python -u benchmarks/bench_tpm_mi.py --layers 4 --precisions fp32,bf16 --paths images --no-infer --vision-attn eager
run tpm_mi_malloc_default python -u benchmarks/bench_tpm_mi.py --precisions fp32,bf16 --paths images --no-infer --malloc default
run tpm_mi_bound env OMP_PROC_BIND=close OMP_PLACES=cores python -u benchmarks/bench_tpm_mi.py --paths images --no-infer
run pipeline_fp32 python -u benchmarks/bench_pipeline.py --precision fp32
run tpm_mi_1thread python -u benchmarks/bench_tpm_mi.py --layers 4 --precisions fp32,bf16 --paths images --no-infer --threads 1
