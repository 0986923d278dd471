#!/usr/bin/env bash
# The GPU check of the README's performance section, one command on a CUDA machine: ResNet-50 at
# 224 px, batch 128, bf16 autocast and channels-last (as dermbench trains on CUDA), dermbench's
# epoch against the in-memory ceiling and the ImageFolder loop, on generated images unless --data
# is given (e.g. --data ham10000=PATH). Extra arguments go to benchmarks/throughput.py.
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: run this on a GPU machine')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python benchmarks/throughput.py --model resnet50 --sizes 224 --batch 128 --images 4096 \
    --workers "$(( $(nproc) < 8 ? $(nproc) : 8 ))" --repeats 3 --device cuda "$@"
