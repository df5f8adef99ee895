#!/usr/bin/env bash
# Run a command on a busy machine: a CPU-bound process spins on one core (HOG_CORE, default 0) for
# the whole run, as another Ray program's CPU-bound task sharing the host would. It runs at Ray's
# worker niceness (HOG_NICE, default 15, Ray's RAY_worker_niceness): every engine, client and
# actor of the tests is a Ray worker at nice 15, and a hog at nice 0 would leave a worker sharing
# its core about 3 % of it (weights 1024 : 36), which measures the kernel's priorities, not the
# tests. The hog is this script's own child, stopped by its PID when the command ends; the
# command's exit code is this script's.
set -euo pipefail
core="${HOG_CORE:-0}"
niceness="${HOG_NICE:-15}"
nice -n "$niceness" taskset -c "$core" python3 -c 'while True: pass' &
hog=$!
trap 'kill "$hog" 2>/dev/null || true' EXIT
sleep 0.5
if ! kill -0 "$hog" 2>/dev/null; then
  echo "with-cpu-hog: the hog did not start (are nice and taskset installed?); the run would not be busy" >&2
  exit 1
fi
echo "with-cpu-hog: pid $hog spins on core $core at nice $niceness"
"$@"
