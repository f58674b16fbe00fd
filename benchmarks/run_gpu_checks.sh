#!/usr/bin/env bash
# GPU checks, run on a machine with a CUDA GPU from the repository root, with folders carried along
# (all ignored by git): .benchdata/ds (a prepared
# data set: benchmarks/bench_train.py --dataset) and .whl/ (pure-Python wheels the GPU image lacks:
# pydicom, nibabel, pynrrd, platformdirs). Writes JSON and logs to ${OUT:-out}. INFER_ONLY=1 stops
# after the inference benchmarks; TRAIN_BENCH=1 adds the training benchmark; QUALITY_BENCH=1 adds
# the quality-at-equal-compute benchmark (QUALITY_BUDGET per recipe, default 150s: three recipes
# must fit one 10-minute command); THROUGH_PLANE_BENCH=1 the through-plane timing (256 x 256 x 64).
set -uo pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src:$PWD/benchmarks:$PWD/tests:${PYTHONPATH:-} PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name())' | tee -a "$OUT/gpu.txt"
timeout 330 python3 benchmarks/bench_infer.py --seconds 1.5 \
    --json "$OUT/bench_infer_gpu.json" --profile "$OUT/bench_infer_profile_gpu.txt" 2>&1 | tail -30 | tee "$OUT/bench_infer_gpu.log"
timeout 90 python3 benchmarks/bench_infer_layers.py --json "$OUT/bench_infer_layers_gpu.json" 2>&1 | tail -40 | tee "$OUT/bench_infer_layers_gpu.log"
timeout 80 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tail -3 | tee "$OUT/pytest_gpu.log"
[ "${INFER_ONLY:-0}" = 1 ] && exit 0
if [ "${TRAIN_BENCH:-0}" = 1 ]; then
    timeout 420 python3 benchmarks/bench_train.py --dataset .benchdata/ds \
        --json "$OUT/bench_train_gpu.json" 2>&1 | tail -40 | tee "$OUT/bench_train_gpu.log"
fi
if [ "${QUALITY_BENCH:-0}" = 1 ]; then
    timeout 590 python3 benchmarks/bench_quality.py --budget "${QUALITY_BUDGET:-150s}" --device cuda --amp bf16 \
        --dataset .benchdata/ds --out /tmp/bench_quality 2>&1 | tail -60 | tee "$OUT/bench_quality_gpu.log"
    cp /tmp/bench_quality/results.* "$OUT/" 2>/dev/null
fi
if [ "${THROUGH_PLANE_BENCH:-0}" = 1 ]; then  # needs the sample data carried in .benchdata/cache
    MEDSR_CACHE_DIR=$PWD/.benchdata/cache timeout 240 python3 benchmarks/bench_through_plane.py --volumes s1 \
        --cases f4-gaussian --methods bspline,medsr --json "$OUT/bench_through_plane_gpu.json" 2>&1 | tail -8 \
        | tee "$OUT/bench_through_plane_gpu.log"
fi
# the paper's networks (16 x 64) for one short epoch each: SRResNet with the CUDA graph, then SRGAN
timeout 150 python3 -m medsr train configs/paper_srresnet.yaml --set data.dataset=.benchdata/ds --set run_dir=/tmp/p_sr \
    --set train.epochs=1 --set data.val_limit=8 --set train.cuda_graph=true 2>&1 | tail -2 | tee "$OUT/train_paper.log"
timeout 200 python3 -m medsr train configs/paper_srgan.yaml --set data.dataset=.benchdata/ds --set run_dir=/tmp/p_gan \
    --set train.init_from=/tmp/p_sr/best.pt --set adversarial.vgg_weights=random --set train.epochs=1 \
    --set data.val_limit=8 2>&1 | tail -2 | tee -a "$OUT/train_paper.log"
