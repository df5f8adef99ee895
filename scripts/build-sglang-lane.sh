#!/usr/bin/env bash
# Build (once) the SGLang "engine lane": a separate CPU-only venv that runs real SGLang
# in-process, next to the driver's vLLM venv. Prints the venv path as the LAST line of stdout
# (everything else goes to stderr), so callers can do:  LANE=$(scripts/build-sglang-lane.sh | tail -1)
#
#   venv:  ${VENV_ROOT:-$HOME/.cache/llmsweep}/sglang-<hash>
#   hash:  first 12 hex of sha256 over requirements/sglang-lock.txt, this script and the
#          sgl_kernel test shim (it is copied into the venv, so a shim change must rebuild)
#   done:  <venv>/.ready; when present nothing is done (idempotent, safe to call every time)
#
# Route: CPU torch 2.13.0+cpu (from the machine's find-links wheel dir) + everything with
# --no-deps from pinned lists; about 3.5 GB and 1.5 min. The "plain" route (pip install
# sglang) pulls CUDA torch 2.14.1 and ~11 GB of CUDA libraries that cannot run here.
# Two fixes make the CPU route work:
#  * torchvision 0.28.0 (the release for torch 2.13) exists on PyPI only as a CUDA build, whose
#    _C extension cannot load against CPU torch; its _meta_registrations.py then registers
#    fake kernels for ops that do not exist and `import torchvision` raises
#    "operator torchvision::nms does not exist". SGLang (via transformers' image utils and its
#    multimodal processors) imports torchvision at start-up, so we patch those two
#    registrations to be skipped when the ops are absent. Image transforms keep working;
#    torchvision.ops (nms, roi_align) do not, and nothing in text generation uses them.
#  * sgl_kernel: PyPI's sglang-kernel is CUDA-only, so the test shim from
#    tests/support/sgl_kernel is copied into site-packages (TEST SUPPORT ONLY: never on a
#    GPU host; this lane is CPU-only by construction).
# triton is needed only because SGLang decorates kernels with @triton.jit at import time.
set -euo pipefail

SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
ROOT="$(cd "$(dirname "$SELF")/.." && pwd)"
LOCK="$ROOT/requirements/sglang-lock.txt"
SHIM="$ROOT/tests/support/sgl_kernel"
PYTHON="${PYTHON:-python3}"
VENV_ROOT="${VENV_ROOT:-$HOME/.cache/llmsweep}"
# Installed here rather than from the lock: the CPU torch wheel (local-version pinned, so a
# machine without the CPU wheel fails loudly instead of pulling CUDA torch), the torchvision
# that matches it (patched below), the triton that matches it, and SGLang itself.
ENGINE_PINS=(torch==2.13.0+cpu torchvision==0.28.0 triton==3.7.1 sglang==0.5.23)

HASH="$( (cat "$LOCK" "$SELF"; for f in "$SHIM"/*.py; do echo "== ${f##*/}"; cat "$f"; done) \
        | sha256sum | cut -c1-12)"
VENV="$VENV_ROOT/sglang-$HASH"

if [ -f "$VENV/.ready" ]; then
  echo "$VENV"
  exit 0
fi

mkdir -p "$VENV_ROOT"
# One builder at a time per lane; a second caller waits, then finds .ready.
exec 9>"$VENV.lock"
flock 9
if [ -f "$VENV/.ready" ]; then
  echo "$VENV"
  exit 0
fi

{
  echo "building SGLang CPU lane at $VENV (one-off, about 1.5 minutes, ~3.5 GB)"
  start=$SECONDS
  "$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), "need Python 3.11 (cp311 wheels)"'
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
  "$VENV/bin/python" -m pip install -q --no-deps "${ENGINE_PINS[@]}" -r "$LOCK"

  SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

  # Fix torchvision for CPU torch (see the header).
  "$VENV/bin/python" - "$SITE/torchvision/_meta_registrations.py" <<'PY'
import pathlib
import sys

path = pathlib.Path(sys.argv[1])
src = path.read_text()
marker = "# llmsweep sglang-lane patch"
if marker not in src:
    old = '@torch.library.register_fake("torchvision::'
    anchor = "import torchvision.extension  # noqa: F401\n"
    if src.count(old) != 2 or anchor not in src:
        sys.exit(f"unexpected {path}: torchvision patch does not apply")
    src = src.replace(old, '@_register_fake_if_ops("torchvision::')
    src = src.replace(anchor, anchor + f"""

{marker}: this CUDA-built torchvision cannot load its _C ops on CPU torch,
# so only register fake kernels for ops that exist.
def _register_fake_if_ops(name):
    if torchvision.extension._has_ops():
        return torch.library.register_fake(name)
    return lambda fn: fn
""", 1)
    path.write_text(src)
PY

  # The sgl_kernel test shim, as a plain package in site-packages.
  rm -rf "$SITE/sgl_kernel"
  mkdir -p "$SITE/sgl_kernel"
  cp "$SHIM"/*.py "$SITE/sgl_kernel/"

  # Smoke test: the imports the lane exists for, with the exact driver Ray.
  SGLANG_USE_CPU_ENGINE=1 HF_HUB_OFFLINE=1 MLFLOW_DISABLE_TELEMETRY=true \
    "$VENV/bin/python" -W ignore -c '
import numpy, pyarrow, pydantic, ray, torch, torchvision, yaml
import sgl_kernel, sglang
import sglang.srt.entrypoints.engine  # noqa: F401
from sglang import Engine  # noqa: F401
assert getattr(sgl_kernel, "IS_TEST_SHIM", False), sgl_kernel.__file__
assert ray.__version__ == "2.60.0", ray.__version__
assert sglang.__version__ == "0.5.23", sglang.__version__
assert torch.__version__ == "2.13.0+cpu", torch.__version__
print("lane ok: sglang", sglang.__version__, "torch", torch.__version__, "ray", ray.__version__)
'
  touch "$VENV/.ready"
  echo "built $VENV in $((SECONDS - start)) s, $(du -sh "$VENV" | cut -f1)"
} >&2

echo "$VENV"
