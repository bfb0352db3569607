# Two commands on a fresh machine: `make demo` and `make test`. Both set up
# a virtual environment with pinned dependencies from PyPI first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TINYDISTILL_DATA ?= ../shared/data
export TINYDISTILL_DATA
export TF_CPP_MIN_LOG_LEVEL := 3

.PHONY: demo test lint bench install clean firmware-check

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e ".[dev]"
	touch $@

# Compress the shipped example teacher for a Raspberry Pi Pico (RP2040, Cortex-M0+):
# no data and no network needed; the student is sized to the board. With
# MNIST beside the project, also measure accuracy on its test set.
demo: install
	$(BIN)/tinydistill compress examples/mnist/teacher.h5 --board cortex-m0plus \
		--stats examples/mnist/teacher.stats.npz \
		$(if $(wildcard $(TINYDISTILL_DATA)/mnist),--data $(TINYDISTILL_DATA)/mnist) -o demo-out
	@echo; cat demo-out/report.md

# Two test processes (pytest-xdist): the tests are small models whose steps leave a core idle, so two at once
# finish in about 60 % of the time on CI's two cores. TEST_WORKERS=0 runs them in one process.
TEST_WORKERS ?= 2
test: install
	$(BIN)/pytest -q -n $(TEST_WORKERS)

# The firmware stage end to end (TFLite Micro built for a Cortex-M4, linked, run under QEMU): needs
# gcc-arm-none-eabi, libnewlib-arm-none-eabi, libstdc++-arm-none-eabi-newlib and qemu-system-arm (Debian
# packages) and TFLite Micro's sources (../shared/firmware or $$TINYDISTILL_TFLM). The first build takes minutes.
firmware-check: install
	$(BIN)/pytest -q -m firmware tests/e2e/test_firmware.py

lint: install
	$(BIN)/ruff check tinydistill tests examples benchmarks

bench: install
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache
