# Two entry points for a newcomer (see README.md):
#   make demo   install into .venv and run the whole pipeline on the embedded demo plate
#   make test   install into .venv, start the local SLURM test cluster, run every test
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: install demo test benchmarks clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --no-cache-dir -U pip
	$(PIP) install --no-cache-dir -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (jumpdenoise)" >/dev/null
	touch $@

demo: install
	$(VENV)/bin/jumpdenoise run

test: install
	bash slurm/install_test_cluster.sh
	bash slurm/start_test_cluster.sh
	$(PY) -m pytest -ra --durations=15 tests

benchmarks: install
	$(PY) benchmarks/convert.py
	$(PY) benchmarks/train.py
	$(PY) benchmarks/predict.py

clean:
	rm -rf $(VENV) jumpdenoise-run jumpdenoise-demo
