# Two commands set up a fresh machine: `make run` runs the stack, `make test` runs the tests.
# Both create .venv and install what they need.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# Tools the tests call: pdfsig (poppler) and qpdf check stamped PDFs, zbarimg decodes the QR code,
# SoftHSM2 is the real PKCS#11 token the hardware-key tests sign with, and Playwright drives
# Debian's Chromium through the web page.
SYSTEM_TOOLS := pdfsig pdftoppm zbarimg qpdf softhsm2-util chromium
SYSTEM_PACKAGES := poppler-utils zbar-tools qpdf softhsm2 chromium

.PHONY: run test lint protos system-tools clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(INSTALLED)

run: $(INSTALLED)
	$(BIN)/emeterai up $(ARGS)

system-tools:
	@missing=""; for tool in $(SYSTEM_TOOLS); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing $(SYSTEM_PACKAGES) for:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
	  else \
	    echo "missing:$$missing; install the Debian packages $(SYSTEM_PACKAGES)" >&2; exit 1; \
	  fi; \
	fi

lint: $(INSTALLED)
	$(BIN)/ruff check .
	cd protos && ../$(BIN)/buf lint

test: $(INSTALLED) system-tools lint
	$(BIN)/pytest

protos: $(INSTALLED)
	$(BIN)/python scripts/gen_protos.py

clean:
	rm -rf $(VENV) .emeterai .pytest_cache .ruff_cache
