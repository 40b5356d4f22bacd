# Two commands on a fresh machine (Python 3.11 and make):
#   make demo   set up .venv (requirements.txt and this checkout, `pip install -e .`) if needed,
#               train and test on the synthetic set
#   make test   set up .venv (requirements-dev.txt: JAX and torch on the CPU too) if needed, run
#               the whole test suite
# Both are idempotent: the environment is reused while the requirements files and pyproject.toml
# are unchanged. The commands README names (spherical-cnn-predict, ...) are then in .venv/bin.
PYTHON ?= python3
VENV ?= .venv
PYTEST_ARGS ?=
# test processes (pytest-xdist); each test file runs whole in one of them (module fixtures built once)
PYTEST_WORKERS ?= 2

.PHONY: demo test venv venv-dev

demo: venv
	$(VENV)/bin/python scripts/train.py @params/model-32.txt @params/synthetic-32.txt \
	    @params/training-cpu.txt --logdir logs/synthetic

# pytest's exit status 5 (no test collected) counts as a failure.
test: venv-dev
	@$(VENV)/bin/python -m pytest --durations=15 -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

venv:
	@PYTHON=$(PYTHON) tools/ensure_venv.sh $(VENV) requirements.txt

venv-dev:
	@PYTHON=$(PYTHON) tools/ensure_venv.sh $(VENV) requirements-dev.txt
