#!/usr/bin/env bash
# One prepared GPU check (one CUDA GPU, under 5 minutes): the CUDA tests with the [cuda] extra required
# (its kernels must have run), then T2MD Table 3 measured on the GPU at 2048x2048 and 3840x2160.
# Rows are written to ${OUT:-results/gpu-check}/ (pytest log, table3.jsonl) and to the results store.
#
#   pip install -e '.[dev]' && pip install --no-build-isolation -e '.[cuda]'
#   bash scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-results/gpu-check}"
mkdir -p "$out"
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible to torch')"
# which CUDA packages import: the fused mixers need causal-conv1d as well as mamba-ssm (seen on an H200)
python -c "from zoo.ops import _cuda; print(_cuda.available())" | tee "$out/packages.txt"
MAMBABENCH_REQUIRE_CUDA_EXTRA=1 timeout 180 python -m pytest -q tests/test_cuda.py tests/test_cuda_glue.py \
    2>&1 | tee "$out/pytest.log"
timeout 120 bench paper t2md-table3 --measure --device cuda --dtype bfloat16 --json | tee "$out/table3.jsonl"
echo "written: $out/packages.txt $out/pytest.log $out/table3.jsonl"
