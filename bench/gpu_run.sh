#!/usr/bin/env bash
# The one GPU run: install the carried wheels (no network there), show the machine, run
# bench/gpu_check.py. Run from the repository root on the device, with .whl/ carried:
#     bash bench/gpu_run.sh            (results in $OUT/gpu_check.json and $OUT/gpu_check.log)
# Extra arguments go to gpu_check.py (a CPU rehearsal: bash bench/gpu_run.sh --quick --device cpu).
set -u
OUT="${OUT:-/tmp/gpu_check_out}"
SITE="${SITE:-/tmp/site}"
mkdir -p "$OUT"
{
  echo "== $(date -u +%FT%TZ) $(hostname)"
  nvidia-smi || echo "nvidia-smi failed"
  ls .whl/ 2>&1
} 2>&1 | tee "$OUT/setup.log"
# pydantic (+ core, annotated-types, typing-inspection, typing-extensions) and httpx (+ httpcore,
# h11, anyio, idna, certifi): imported by pcd_core at import time, missing from the image.
if ! python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target "$SITE" .whl/*.whl >>"$OUT/setup.log" 2>&1; then
  # no pip (or it failed): these wheels need no build step, plain extraction installs them
  echo "pip install failed; extracting the wheels instead" | tee -a "$OUT/setup.log"
  python3 -c 'import sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in sys.argv[2:]]' \
    "$SITE" .whl/*.whl 2>&1 | tee -a "$OUT/setup.log"
fi
export PYTHONPATH="$SITE:$PWD"
python3 - <<'PY' 2>&1 | tee -a "$OUT/setup.log"
import sys, torch, numpy, pydantic, httpx
print("python", sys.version.split()[0], "| torch", torch.__version__, "cuda", torch.version.cuda,
      "| available", torch.cuda.is_available(), "| numpy", numpy.__version__,
      "| pydantic", pydantic.VERSION, "| httpx", httpx.__version__)
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))
import pcd_core.train, pcd_core.methods  # the imports gpu_check needs
print("pcd_core imports ok")
PY
# tests/losses run on the CPU only (no device parameter): not repeated here.
PYTHONUNBUFFERED=1 timeout 480 python3 bench/gpu_check.py --out "$OUT/gpu_check.json" "$@" 2>&1 \
  | tee "$OUT/gpu_check.log"
rc=${PIPESTATUS[0]}
echo "gpu_check exit status $rc (0: every check ok; 1: a check failed or errored; 124: timeout)"
exit "$rc"
