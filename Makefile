# zhice — two commands do all set-up: `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
HOST   ?= 127.0.0.1
STAMP  := $(VENV)/.installed

.PHONY: run test test-milvus lint unit model index bench bench-milvus eval clean browser soak

run: index
	$(BIN)/zhice serve --host $(HOST) --port $(PORT)

# The whole suite on the local store, then test-milvus.
test: $(STAMP) model lint browser
	$(BIN)/python -m pytest
	$(MAKE) --no-print-directory test-milvus

# Every test whose knowledge base the fixtures build (tests/conftest.py, `store`), again
# on Milvus: a milvus-lite server the session starts. Tests of the local index format
# itself are skipped there, with the reason; tests that use no store are not collected.
test-milvus: $(STAMP) model browser
	ZHICE_TEST_STORE=milvus $(BIN)/python -m pytest

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11) on PATH"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch is pinned in constraints.txt to the CPU build, so pip never pulls CUDA wheels.
	$(BIN)/pip install --disable-pip-version-check -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

# Debian's Chromium and ChromeDriver for the widget's browser test, and a CJK font so its
# screenshot shows Chinese. Installed only when missing and we are root; otherwise a loud
# warning, and tests/test_widget_browser.py skips.
BROWSER_FILES := /usr/bin/chromium /usr/bin/chromedriver /usr/share/fonts/truetype/wqy/wqy-microhei.ttc
browser:
	@if ls $(BROWSER_FILES) >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium and chromium-driver for the browser test"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
			chromium chromium-driver fonts-wqy-microhei \
		|| echo "WARNING: could not install chromium; the browser test will be SKIPPED"; \
	else \
		echo "WARNING: chromium, chromedriver or a CJK font missing and not root:"; \
		echo "WARNING: apt-get install chromium chromium-driver fonts-wqy-microhei,"; \
		echo "WARNING: or the browser test is SKIPPED"; \
	fi

model: $(STAMP)
	$(BIN)/zhice prepare-model

index: model
	$(BIN)/zhice ingest

lint: $(STAMP)
	$(BIN)/ruff check ingest service tests
	$(BIN)/ruff format --check ingest service tests
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest -m "not e2e"

eval: index
	$(BIN)/zhice eval --report reports/eval

# CMRC 2018 dev: 848 paragraphs, 3,219 questions; the index is kept in build/cmrc.
CMRC ?= ../shared/benchmarks/cmrc2018/cmrc2018_dev.json
.PHONY: bench-cmrc
bench-cmrc: model
	$(BIN)/zhice eval --cmrc $(CMRC) --cmrc-workdir build/cmrc --report reports/cmrc

bench: index
	$(BIN)/python -m tests.bench

# The Milvus store on a milvus-lite server at 100,000 synthetic chunks (not in CI).
bench-milvus: model
	$(BIN)/python -m tests.bench_milvus --chunks 100000

# The local backend at 100,000 and 1,000,000 synthetic chunks (not part of `make test`;
# about 45 minutes on two busy cores, 10 GB of disk). SIZES picks others, e.g. SIZES=100000.
SIZES ?= 100000,1000000
.PHONY: bench-scale
bench-scale: model
	$(BIN)/python -m tests.bench_scale --sizes $(SIZES) --report reports/bench-scale

# Abuse a real server on copies of the data (not part of `make test`): a DOCX bomb, an
# upload flood, SOAK_SECONDS of 16 clients asking, schemathesis with SOAK_EXAMPLES per
# operation, SOAK_KILLS kill -9 trials.
SOAK_SECONDS  ?= 600
SOAK_KILLS    ?= 20
SOAK_EXAMPLES ?= 100
soak: index
	$(BIN)/python -m tests.soak --ask-seconds $(SOAK_SECONDS) --examples $(SOAK_EXAMPLES) --kills $(SOAK_KILLS)

clean:
	rm -rf $(VENV) index .pytest_cache .mypy_cache .ruff_cache *.egg-info
