# Two commands on a fresh machine: `make demo` and `make test`. Both create the project-local
# virtual environment on first use (pinned deps from requirements.txt) and reuse it afterwards.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Keep test and demo traffic on this machine and off other users' DDS domains.
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
export PYTHONUNBUFFERED := 1

.PHONY: venv demo test bench-speed bench-paper bench-sim bench-exactness bench-online bench-integrator clean

$(STAMP): requirements.txt setup.py setup.cfg package.xml
	@echo "== setting up $(VENV) (pinned deps; reused on the next run) =="
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/syrenets-ros demo

test: $(STAMP)
	$(PY) -m pytest -q test

bench-speed: $(STAMP)
	$(VENV)/bin/syrenets-ros bench speed

bench-paper: $(STAMP)
	$(VENV)/bin/syrenets-ros bench paper

bench-sim: $(STAMP)
	$(VENV)/bin/syrenets-ros bench sim

bench-exactness: $(STAMP)
	$(VENV)/bin/syrenets-ros bench exactness

bench-online: $(STAMP)
	$(VENV)/bin/syrenets-ros bench online

bench-integrator: $(STAMP)
	$(VENV)/bin/syrenets-ros bench integrator

clean:
	rm -rf $(VENV) build *.egg-info runs .pytest_cache
