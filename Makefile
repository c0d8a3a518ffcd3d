# Two commands on a fresh machine:  make demo   (set up + run the demo)   and   make test   (set up + run tests)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
# The CPU build of torch; GPU users: install your CUDA build into $(VENV) first and it is kept.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup demo test browser clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

demo: setup
	$(BIN)/dreamvid demo

# Browser tests drive Debian's chromium (no browser download); as root we install it, else say how.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
		|| { echo "install chromium first: sudo apt-get install -y chromium"; exit 1; }

test: setup browser
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) demo
