#!/usr/bin/env bash
# GPU check of the pipeline benchmarks, run from the repository root, no network (HF_HUB_OFFLINE=1).
#
# Prints, every figure measured in this run (see bench/bench_pipeline.py's docstring):
#   1. bench_pipeline.py --host-only: a tiny model (forward on the GPU), 48 photos 1024x768; per-photo
#      stage costs on one core, img/s on all cores, efficiency against N / (read+preprocess+encode).
#   2. bench_pipeline.py --no-compile: table A, 512 photos 1024x768, ours bf16 batch 64 (squashed to
#      384x384 as transformers must, and keeping the aspect) vs transformers' pipeline fp16 batch 16;
#      ours bf16 vs fp32 error; table C eager (model alone, 384x384 bf16, batch 64 img/s, batch 1 ms).
#   3. bench_pipeline.py --model-only: table C again, eager then torch.compile'd (4 compiles); each row
#      is printed once measured, so a timeout keeps the rows done.
#   4. bench_families.py: MiDaS v3.1 BEiT-B-384, Swin2-T-256 and Depth Anything V2-S (random weights),
#      ours vs transformers, bf16 batch 16 img/s for both (the large releases take too long to build here).
#   5. bench_video.py: a 1080p H.264 clip end to end (frames/s) against the same frames as PNGs, and
#      against the model alone at that network size (ViT-S-sized DPT, bf16 batch 16).
# The plain `bench_pipeline.py` does 2 and 3 in one run plus an `ours --compile` row in A, too long
# for this budget. Steps have their own timeouts (40 + 155 + 30 + 60 + 75 s): under 6 minutes on an
# H100 with 16 cores whatever happens; expected about 4 to 5 (compile times not yet measured there).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=""
for candidate in .venv/bin/python python python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "import torch" >/dev/null 2>&1; then
        PY=$candidate
        break
    fi
done
[ -n "$PY" ] || { echo "no python with torch found (.venv/bin/python, python, python3)"; exit 2; }
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1

failed=0
step() {  # step SECONDS ARGS...: one timed step; a failure or timeout is reported and the next step runs
    local limit=$1 start=$SECONDS code=0
    shift
    echo "=== $PY $* (timeout ${limit} s)"
    timeout --kill-after=5 "$limit" "$PY" "$@" || code=$?
    case $code in
        0) ;;
        124|137) echo "=== timed out after ${limit} s: the rows above are what it measured"; failed=1 ;;
        *) echo "=== exit status $code"; failed=1 ;;
    esac
    echo "=== $((SECONDS - start)) s"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "(nvidia-smi unavailable)"
step 40 bench/bench_pipeline.py --host-only
step 155 bench/bench_pipeline.py --no-compile
step 30 bench/bench_pipeline.py --model-only
step 60 bench/bench_families.py --device cuda --dtype bfloat16 --batch 16 --runs 5 --releases dpt_beit_base_384,dpt_swin2_tiny_256,depth_anything_v2_vits
step 75 bench/bench_video.py --device cuda --dtype bfloat16 --batch-size 16 --size 1080x1920 --frames 96 --repeats 1 --models vit-s
exit $failed
