#!/usr/bin/env bash
# Run a command on a busy machine: a CPU-bound process spins on one core (HOG_CORE, default 0) for
# the whole run, as another program sharing the host would. The hog is this script's own child and
# is stopped by its PID when the command ends; the command's exit code is this script's.
set -euo pipefail
core="${HOG_CORE:-0}"
taskset -c "$core" python3 -c 'while True: pass' &
hog=$!
trap 'kill "$hog" 2>/dev/null || true' EXIT
sleep 0.5
if ! kill -0 "$hog" 2>/dev/null; then
  echo "with-cpu-hog: the hog did not start (is taskset installed?); the run would not be busy" >&2
  exit 1
fi
echo "with-cpu-hog: pid $hog spins on core $core"
"$@"
