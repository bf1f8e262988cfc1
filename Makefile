# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install browser test test-slow demo demo-model bench bench-time-to-image bench-peers clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: a bare `pip install torch` would pull several GB of CUDA wheels.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Headless Chromium for the `ldm serve` page test (Debian package; needs root). Without it that test skips.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "make: chromium is not installed (apt-get install chromium); the page test will be skipped"

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

# The slow fault rounds (many kill -9s during fine-tuning, then an exact resume), skipped by `make test`.
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

demo: $(STAMP)
	$(BIN)/python -m ldm_cli.demo_run

# Rebuild ldm_cli/assets/demo from nothing (fixed seeds; resumable: run it again after an interruption).
demo-model: $(STAMP)
	$(BIN)/python -m ldm_cli.demo.build

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run
	$(BIN)/python -m benchmarks.time_to_image $(if $(QUICK),--quick)
	$(if $(PEERS),$(BIN)/python -m benchmarks.peers $(if $(QUICK),--quick))

# Only the time-to-image table (about 8 min on a busy 2-core CPU; QUICK=1: 12 demo prompts, one SD1.5 round).
bench-time-to-image: $(STAMP)
	$(BIN)/python -m benchmarks.time_to_image $(if $(QUICK),--quick)

# ldm against OpenVINO and stable-diffusion.cpp, each in its own venv under benchmarks/.venvs (made on
# first use, about 2 GB; sd.cpp builds from source in ~5 min). 20-30 min at 512 px; QUICK=1: 256 px, ~10 min.
# `make bench PEERS=1` runs it after the rest; plain `make bench` does not.
bench-peers: $(STAMP)
	$(BIN)/python -m benchmarks.peers $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) outputs .pytest_cache
