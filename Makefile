# Two commands set everything up: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench clean mutants coverage

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	@echo "Starting the CDS service on http://127.0.0.1:8080 with CDS_AUTH_REQUIRED=false (local trial only)."
	@echo "Try:  curl http://127.0.0.1:8080/cds-services"
	@echo "      $(BIN)/cds-service replay fixtures/records/om-probable-ptb-esr.json --url http://127.0.0.1:8080"
	CDS_AUTH_REQUIRED=false $(BIN)/cds-service serve --host 127.0.0.1 --port 8080

test: $(STAMP)
	$(BIN)/ruff check .
	bash tests/support/start-services.sh
	$(BIN)/python -m pytest

# Mutation testing (README "Mutation testing"), not part of make test. The whole scope is ~6,500
# mutants (hours on 2 cores): run one module at a time, e.g.
#   make mutants MUTANTS='cds_service.clinical.facts*'
MUTANTS ?=
MUTANTS_STAMP := $(VENV)/.installed-mutants

$(MUTANTS_STAMP): pyproject.toml | $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,mutants]'
	touch $(MUTANTS_STAMP)

mutants: $(MUTANTS_STAMP)
	$(BIN)/mutmut run --max-children 2 $(MUTANTS)
	$(BIN)/mutmut results

# Line and branch coverage of cds_service/ (README "Coverage"): the suite under pytest-cov.
coverage: $(STAMP)
	bash tests/support/start-services.sh
	$(BIN)/python -m pytest --cov --cov-report=term-missing

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info mutants .coverage
