#!/usr/bin/env bash
# GPU checks, run on a machine with a CUDA GPU from the repository root, with two folders carried
# along (both ignored by git): .yardstick/textbook_srresnet.py (the yardstick) and .benchdata/ds
# (a prepared data set: benchmarks/bench_train.py --dataset). Writes JSON and logs to ${OUT:-out}.
set -uo pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src:$PWD/benchmarks PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name())' | tee -a "$OUT/gpu.txt"
timeout 420 python3 benchmarks/bench_train.py --yardstick .yardstick/textbook_srresnet.py --dataset .benchdata/ds \
    --json "$OUT/bench_train_gpu.json" 2>&1 | tail -40 | tee "$OUT/bench_train_gpu.log"
timeout 120 python3 -m medsr train configs/tiny.yaml --set data.dataset=.benchdata/ds --set run_dir=/tmp/gpu_tiny \
    --set train.device=cuda --set train.cuda_graph=true --set train.ema=0.99 --set train.epochs=2 \
    --set data.patch_size=96 --set data.batch_size=16 2>&1 | tail -5 | tee "$OUT/train_smoke.log"
timeout 120 python3 -m medsr train configs/tiny_srgan.yaml --set data.dataset=.benchdata/ds --set run_dir=/tmp/gpu_gan \
    --set train.device=cuda --set train.init_from=/tmp/gpu_tiny/best.pt --set adversarial.vgg_weights=random \
    --set train.epochs=1 2>&1 | tail -5 | tee -a "$OUT/train_smoke.log"
