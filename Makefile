# seedchip: every target installs what it needs into .venv on first use.
# `make` alone (or `make help`) lists the targets; `##` comments are that list.

PYTHON  ?= python3
VENV    ?= .venv
BOARD   ?= ulx3s-85f
SIM     ?= verilator
CONFIG  ?=
PY       = $(VENV)/bin/python
STAMP    = $(VENV)/.seedchip-installed
export SIM

CONFIG_ARG = $(if $(CONFIG),--config $(CONFIG),)

.PHONY: help bitstream build bitstream-exerciser bitstream-gather flash flash-exerciser flash-gather \
	test bench demo generate clean distclean venv

.DEFAULT_GOAL := help

help: ## this list
	@echo "seedchip: make TARGET [BOARD=$(BOARD)] [CONFIG=chip|default|small|gather|FILE.json] [SIM=verilator|icarus]"
	@echo
	@grep -E '^[a-z-]+( [a-z-]+)*:.*## ' $(MAKEFILE_LIST) | \
	  sed -E 's/^([a-z -]+):.*## (.*)/  \1|\2/' | awk -F'|' '{ printf "%-22s %s\n", $$1, $$2 }'
	@echo
	@echo "After 'make venv': the seedchip command is .venv/bin/seedchip (or 'source .venv/bin/activate')."

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[fpga,test]'
	touch $@

venv: $(STAMP) ## create .venv and install seedchip with every tool from PyPI (each target does it on first use)

bitstream build: $(STAMP) ## the whole chip (host link on USB-serial, SDRAM) -> build/<board>/top.bit + report.json
	$(VENV)/bin/seedchip build --board $(BOARD) $(CONFIG_ARG)

bitstream-exerciser: $(STAMP) ## the matrix unit on pattern generators + SDRAM self test -> build/<board>-exerciser/
	$(VENV)/bin/seedchip build --top exerciser --board $(BOARD) $(CONFIG_ARG)

bitstream-gather: $(STAMP) ## the exerciser with the gather engine (recommender build) -> build/<board>-gather/
	$(VENV)/bin/seedchip build --top exerciser --board $(BOARD) --config gather --build-dir build/$(BOARD)-gather

flash: $(STAMP) ## program a connected board with build/<board>/top.bit, the chip `make bitstream` made (needs libusb-1.0, libftdi1)
	$(VENV)/bin/seedchip flash --board $(BOARD)

flash-exerciser: $(STAMP) ## ... with the exerciser build
	$(VENV)/bin/seedchip flash --board $(BOARD) --bitstream build/$(BOARD)-exerciser/top.bit

flash-gather: $(STAMP) ## ... with the recommender build
	$(VENV)/bin/seedchip flash --board $(BOARD) --bitstream build/$(BOARD)-gather/top.bit

generate: $(STAMP) ## Verilog of the matrix unit -> build/verilog/
	$(VENV)/bin/seedchip generate $(CONFIG_ARG) --out build/verilog

test: $(STAMP) ## the whole test suite, cocotb testbenches included (about 20 min on 2 cores)
	$(PY) -m pytest -ra $(PYTEST_ARGS)

bench: $(STAMP) ## benchmarks and both board builds -> build/bench.json + the README table
	$(VENV)/bin/seedchip bench --out build/bench.json --readme README.md

demo: $(STAMP) ## train a small recommender on synthetic clicks, quantize, compile, run it on the simulated chip (a few minutes)
	$(VENV)/bin/seedchip demo

clean: ## remove build/
	rm -rf build sim_build .pytest_cache

distclean: clean ## ... and .venv
	rm -rf $(VENV) *.egg-info
