#!/usr/bin/env bash
# The GPU check, for a machine with CUDA GPUs. Budget: 8 minutes; each part has a time limit (their sum is 480 s), so
# a part that hangs is stopped and reported, and the others still run:
#   1. the notebook cells flagged `cuda` (with the rest of their notebooks) and the CUDA-only pytest tests;
#   2. the benchmark report's reference part on the GPU: every method at ViT-B/16 x 8 and x 16 frames, bf16 autocast
#      (fp16 on pre-Ampere GPUs), training clips/s, peak memory, and model FLOP utilisation against the bf16 peak;
#   3. DDP over NCCL on every visible GPU: `efficient-video train` of a tiny preset under torchrun (with one GPU,
#      torchrun starts one process and the engine opens no process group: NCCL needs two GPUs to be exercised);
#   4. `efficient-video demo --device cuda` on two of its rows;
# then one summary. Exit status 0 only if every part passed.
#
#   bash tests/gpu_check.sh                 # from the repository root or anywhere in it
#   OUT=/some/dir bash tests/gpu_check.sh   # where the JSON files and logs go (default runs/gpu_check)
#   EV_PEAK_TFLOPS=989 bash tests/gpu_check.sh   # the GPU's dense bf16 peak, if bench.PEAK_BF16_TFLOPS lacks it
#
# It uses the Python environment it finds: if `efficient_video` is not importable it installs this checkout into it
# (`pip install -e .`, with nothing downloaded if the dependencies are already there).
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
OUT=${OUT:-runs/gpu_check}
mkdir -p "$OUT"
PY=${PYTHON:-python}
start=$(date +%s)

if ! $PY -c "import efficient_video, nbdev, pytest" >/dev/null 2>&1; then
  echo "== installing this checkout (pip install -e .[dev])"
  $PY -m pip install -q --no-build-isolation -e ".[dev]" >"$OUT/install.log" 2>&1 \
    || $PY -m pip install -q --no-build-isolation --no-deps -e . >>"$OUT/install.log" 2>&1 \
    || { echo "gpu_check: could not install the package (see $OUT/install.log)"; exit 2; }
fi
if ! $PY -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: torch sees no CUDA GPU here ($($PY -c 'import torch; print(torch.__version__)')); nothing to check"
  exit 3
fi
NGPU=$($PY -c "import torch; print(torch.cuda.device_count())")
$PY -c "import torch; print('== GPU:', torch.cuda.get_device_name(), '| count', torch.cuda.device_count(), '| torch', torch.__version__, '| CUDA', torch.version.cuda)"

part() {  # part NAME SECONDS COMMAND... : run with a time limit, log to $OUT/NAME.log, record the status and time
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  echo "== $name (limit ${limit}s)"
  timeout --signal=INT --kill-after=20 "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "{\"part\": \"$name\", \"rc\": $rc, \"seconds\": $(( $(date +%s) - t0 ))}" >"$OUT/$name.status.json"
  [ $rc -eq 0 ] && echo "   ok ($(( $(date +%s) - t0 )) s)" || { echo "   FAILED (exit $rc), last lines of $OUT/$name.log:"; tail -15 "$OUT/$name.log"; }
}

# 1. cuda-flagged notebook cells (their notebooks run whole, `cuda` cells included) and the CUDA-only tests
CUDA_NBS=$(grep -l '"#| cuda' nbs/*.ipynb | tr '\n' ' ')
part notebooks 120 bash -c "for nb in $CUDA_NBS; do nbdev-test \$nb --flags cuda || exit 1; done"
part pytest_cuda 45 $PY -m pytest -q tests/test_core_flops.py -k cuda

# 2. the reference part of the benchmark report on the GPU (bf16 autocast), every method at 8 and 16 frames
part reference 150 $PY -m efficient_video.cli bench --part reference --device cuda --out "$OUT/bench" --json
cp "$OUT/bench/bench.json" "$OUT/reference.json" 2>/dev/null

# 3. DDP with NCCL on every visible GPU: the engine's own training loop under torchrun
part ddp 90 $PY -m torch.distributed.run --standalone --nproc_per_node="$NGPU" -m efficient_video.cli train \
  --preset aim-tiny --json epochs=2 output_dir="$OUT/ddp"   # one process per GPU, each on cuda:LOCAL_RANK

# 4. the demo on the GPU (`--device cuda`): a frozen-feature row and an image-tower row, two epochs for the latter
part demo 75 $PY -m efficient_video.cli demo --device cuda --methods efficient-prompt,aim --epochs 2 --out "$OUT/demo" --json

# one summary
$PY - "$OUT" "$NGPU" "$(( $(date +%s) - start ))" <<'EOF'
import json, sys
from pathlib import Path
out, ngpu, seconds = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
parts = {p.name.split('.')[0]: json.loads(p.read_text()) for p in sorted(out.glob('*.status.json'))}
print(f"\n== GPU check summary ({seconds} s in all)")
for name, s in parts.items(): print(f"  {name:12s} {'ok' if s['rc'] == 0 else 'FAILED (exit %d)' % s['rc']:18s} {s['seconds']:4d} s")
ref = out/'reference.json'
if ref.is_file():
    r = json.loads(ref.read_text())['reference']['cuda']
    ok = [x for x in r['rows'] if 'error' not in x]
    dtype = ok[0]['dtype'] if ok else '?'
    print(f"\n  reference scale on {r['device']} ({dtype} autocast, batch {r['batch']}, {r['steps']} timed steps):")
    print(f"  {'method':14s} {'frames':>6s} {'clips/s':>8s} {'peak GB':>8s} {'TFLOP/s':>8s} {'MFU':>6s}")
    for x in r['rows']:
        if 'error' in x: print(f"  {x['method']:14s} {x['frames']:6d}  FAILED: {x['error'][:80]}"); continue
        mfu = f"{x['mfu']:.1%}" if x['mfu'] is not None else '—'
        print(f"  {x['method']:14s} {x['frames']:6d} {x['clips_per_second']:8.1f} {x['peak_memory_gb']:8.2f} {x['tflops']:8.1f} {mfu:>6s}")
    if ok and ok[0]['peak_tflops'] is None: print('  (MFU: unknown bf16 peak for this GPU; set EV_PEAK_TFLOPS)')
log = out/'ddp.log'
if log.is_file():
    try:
        d = json.loads(log.read_text().strip().splitlines()[-1])
        how = f'NCCL, {ngpu} processes' if ngpu > 1 else 'one GPU: a single process, no process group'
        print(f"\n  DDP ({how}): aim-tiny 2 epochs, {d['train_minutes'] * 60:.1f} s of training, "
              f"test top-1 {d['test']['top1']:.1%}")
    except (ValueError, KeyError, IndexError): print('\n  DDP: no result (see ddp.log)')
failed_rows = ref.is_file() and any('error' in x for x in json.loads(ref.read_text())['reference']['cuda']['rows'])
res = out/'demo'/'results.json'
if res.is_file():
    for name, r in json.loads(res.read_text())['methods'].items():
        print(f"  demo --device cuda: {name} top-1 {r['top1']:.1%}, opposite-direction {r['opposite_direction_acc']:.1%}, "
              f"{r['seconds']:.1f} s of training")
sys.exit(0 if parts and all(s['rc'] == 0 for s in parts.values()) and not failed_rows else 1)
EOF
