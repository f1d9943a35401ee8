#!/usr/bin/env bash
# GPU truth in one command, for a CUDA machine without network (torch, triton, nvcc, ninja and
# pytest preinstalled): build tricks_ext._C in place, run the whole test suite on CUDA (gpu-marked
# tests included), run the benchmark suite and score scripts/gpu_model.py's predictions (ours and the
# eager peers') against it
# (OUTDIR/gpu_model.md); logs and results go to OUTDIR.
#   scripts/gpu_check.sh OUTDIR
# Environment: SKIP_BUILD=1, SKIP_TESTS=1, SKIP_BENCH=1 (split the work over several calls),
# PYTEST_ARGS (default "-q -ra"), BENCH_ARGS (e.g. "--ops weight_standardize --quick"),
# TORCH_CUDA_ARCH_LIST (default 9.0), SANITIZE=1 (tests once more under compute-sanitizer memcheck).
set -uo pipefail
OUT=${1:?usage: scripts/gpu_check.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
status=0

{ date -u; git rev-parse --short HEAD 2>/dev/null; nvidia-smi; nvcc --version;
  $PY -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"; } \
  > "$OUT/env.txt" 2>&1

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "== build (log: $OUT/build.log)"
  if ! $PY -m pip install --no-build-isolation --no-deps -v -e . > "$OUT/build.log" 2>&1; then
    tail -n 60 "$OUT/build.log"; echo "BUILD FAILED"; exit 1
  fi
fi
$PY -m tricks_ext info 2>&1 | tee "$OUT/info.txt"

if [ "${SKIP_TESTS:-0}" != 1 ]; then
  echo "== tests (log: $OUT/tests.log)"
  $PY -m pytest tests ${PYTEST_ARGS:--q -ra} --junitxml="$OUT/junit.xml" > "$OUT/tests.log" 2>&1 || status=1
  tail -n 25 "$OUT/tests.log"
  if [ "${SANITIZE:-0}" = 1 ]; then
    echo "== compute-sanitizer memcheck (log: $OUT/sanitizer.log)"
    compute-sanitizer --tool memcheck --error-exitcode 3 $PY -m pytest tests -q -x -m gpu -k "not compile" \
      > "$OUT/sanitizer.log" 2>&1 || status=1
    tail -n 15 "$OUT/sanitizer.log"
  fi
fi

if [ "${SKIP_BENCH:-0}" != 1 ]; then
  echo "== benchmarks (log: $OUT/bench.log)"
  $PY -m benchmarks.run ${BENCH_ARGS:-} --results-dir "$OUT/results" > "$OUT/bench.log" 2>&1 || status=1
  tail -n 40 "$OUT/bench.log"
  echo "== model against measurement (log: $OUT/gpu_model.md)"
  $PY scripts/gpu_model.py --quick --score "$OUT/results/results.csv" > "$OUT/gpu_model.md" 2>&1 || status=1
  sed -n '/Measured beside predicted/,$p' "$OUT/gpu_model.md" | head -n 40
fi
echo "gpu_check: exit $status; logs in $OUT"
exit $status
