# seedchip: every target installs what it needs into .venv on first use.
#
#   make bitstream [BOARD=ulx3s-85f]   Verilog -> Yosys -> nextpnr -> bitstream + build/<board>/report.json
#   make bitstream-gather              the recommender build: matrix unit + gather engine (--config gather)
#                                      -> build/<board>-gather/
#   make test [SIM=verilator|icarus]   the whole test suite (cocotb testbenches included)
#   make flash [BOARD=...]             program a connected board with openFPGALoader
#   make flash-gather                  ... with the gather build
#   make bench                         benchmarks -> build/bench.json (+ the README table)
#   make generate                      Verilog of the default configuration -> build/verilog/

PYTHON  ?= python3
VENV    ?= .venv
BOARD   ?= ulx3s-85f
SIM     ?= verilator
CONFIG  ?=
PY       = $(VENV)/bin/python
STAMP    = $(VENV)/.seedchip-installed
export SIM

CONFIG_ARG = $(if $(CONFIG),--config $(CONFIG),)

.PHONY: all bitstream build bitstream-gather flash flash-gather test test-fast bench generate sim clean distclean venv

all: bitstream

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[fpga,test]'
	touch $@

venv: $(STAMP)

bitstream build: $(STAMP)
	$(VENV)/bin/seedchip build --board $(BOARD) $(CONFIG_ARG)

bitstream-gather: $(STAMP)
	$(VENV)/bin/seedchip build --board $(BOARD) --config gather --build-dir build/$(BOARD)-gather

flash: $(STAMP)
	$(VENV)/bin/seedchip flash --board $(BOARD)

flash-gather: $(STAMP)
	$(VENV)/bin/seedchip flash --board $(BOARD) --bitstream build/$(BOARD)-gather/top.bit

generate: $(STAMP)
	$(VENV)/bin/seedchip generate $(CONFIG_ARG) --out build/verilog

test: $(STAMP)
	$(PY) -m pytest -ra $(PYTEST_ARGS)

bench: $(STAMP)
	$(VENV)/bin/seedchip bench --out build/bench.json --readme README.md

clean:
	rm -rf build sim_build .pytest_cache

distclean: clean
	rm -rf $(VENV) *.egg-info
