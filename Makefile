# tensornet: set-up, tests and a local network. Every target does its own set-up on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv deps test test-fast lint run clean

# Debian packages that the install needs: libp2p builds fastecdsa from source (gcc + GMP headers).
deps:
	@if ! dpkg -s libgmp-dev gcc >/dev/null 2>&1; then \
	  echo "installing Debian build deps (gcc, libgmp-dev)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq gcc libgmp-dev iproute2 >/dev/null; \
	fi

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory deps
	@[ -x $(BIN)/python ] || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned, so pip takes the CPU wheel on disk and never a multi-GB CUDA build.
	$(BIN)/pip install -q "torch==2.13.0" || $(BIN)/pip install -q "torch>=2.13,<2.15"
	$(BIN)/pip install -q -e ".[test]"
	@touch $(STAMP)

venv: $(STAMP)

test: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

test-fast: venv
	$(BIN)/python -m pytest -q -m "not slow"

lint: venv
	$(BIN)/ruff check .

# A whole local network: 4 validator nodes, 2 subnets x (3 miners + 1 validator), 2 paid epochs, then stop.
# The previous run's ./testnet (keys, logs) is removed first; `tensornet testnet up --help` has the options.
run: venv
	@$(BIN)/tensornet testnet clean --dir testnet >/dev/null
	$(BIN)/tensornet testnet up --dir testnet

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
