#!/usr/bin/env bash
# Recreate the ECLARE venv from scratch at the path given as $1 (default: ./venv next to this script).
# CPU only: torch is installed first from the local CPU wheel (torch==2.13.0+cpu, found via
# pip's configured find-links /opt/wheels) so eclare's `torch>=2.5` is already satisfied and
# no CUDA wheel is pulled.  eclare 1.0.1 pins scipy==1.11.4 (-> numpy 1.26.4) and radifox-utils==1.0.3.
set -euo pipefail
TARGET="${1:-$(cd "$(dirname "$0")" && pwd)/venv}"
PY="${PYTHON:-python3}"          # tested with CPython 3.11.7
rm -rf "$TARGET"
"$PY" -m venv "$TARGET"
"$TARGET/bin/pip" install torch==2.13.0
"$TARGET/bin/pip" install eclare==1.0.1
# sanity: CPU torch, entry point present
"$TARGET/bin/python" -c "import torch, eclare, numpy, scipy; assert '+cpu' in torch.__version__ or not torch.cuda.is_available(); print('torch', torch.__version__, 'numpy', numpy.__version__, 'scipy', scipy.__version__)"
"$TARGET/bin/run-eclare" --help >/dev/null
"$TARGET/bin/pip" freeze > "$TARGET/installed-versions.txt"
echo "ECLARE venv ready at $TARGET (run: OMP_NUM_THREADS=1 $TARGET/bin/run-eclare --in-fpath X.nii.gz --out-dir OUT --gpu-id -1)"
