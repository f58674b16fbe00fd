# medsr: `make demo` and `make test` do all set-up on a fresh machine (Python 3.11+).
PYTHON ?= python3
# torch is installed first and pinned here (the CPU build on machines that carry it), so that the
# unpinned requirement in pyproject.toml never pulls a multi-GB CUDA build by accident.
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
DEMO := runs/demo

.PHONY: install demo study test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("medsr needs Python 3.11 or newer" if sys.version_info < (3, 11) else 0)'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check '$(TORCH)'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,vgg,onnx]'
	@touch $@

demo: install
	$(BIN)/medsr run configs/demo.yaml
	@echo "open $(DEMO)/report.html"

# A reader study of the demo's test images, served on http://127.0.0.1:8000 (needs make demo first).
study: install
	@test -d $(DEMO)/study || $(BIN)/medsr mos create $(DEMO)/eval-test --methods bicubic,srresnet,srgan --images 20 --out $(DEMO)/study
	$(BIN)/medsr mos serve $(DEMO)/study

test: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/python -m pytest -n auto -q

bench: install
	$(BIN)/python benchmarks/bench_prepare.py
	$(BIN)/python benchmarks/bench_evaluate.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_infer.py
	$(BIN)/python benchmarks/bench_enhance_memory.py
	$(BIN)/python benchmarks/bench_quality.py --budget 10m
	$(BIN)/python benchmarks/bench_onnx.py

clean:
	rm -rf $(VENV) runs .pytest_cache
