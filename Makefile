# medsr: `make demo` and `make test` do all set-up on a fresh machine (Python 3.11+).
PYTHON ?= python3
# torch is installed first and pinned here (the CPU build on machines that carry it), so that the
# unpinned requirement in pyproject.toml never pulls a multi-GB CUDA build by accident.
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
DEMO := runs/demo
ZOO := runs/zoo/medsr_x4
WEIGHTS := src/medsr/models/weights

.PHONY: install demo study test bench model clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("medsr needs Python 3.11 or newer" if sys.version_info < (3, 11) else 0)'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check '$(TORCH)'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,vgg,onnx]'
	# piq, lpips and DISTS-pytorch: reference values for the metric tests only, installed without their torchvision
	# requirement, which does not install beside the CPU build of torch (the tests stand in for it)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps 'piq==0.8.0' 'lpips==0.1.4' 'DISTS-pytorch==0.1'
	@touch $@

demo: install
	$(BIN)/medsr run configs/demo.yaml
	@echo "open $(DEMO)/report.html"

# A reader study of the demo's test images, served on http://127.0.0.1:8000 (needs make demo first).
study: install
	@test -d $(DEMO)/study || $(BIN)/medsr mos create $(DEMO)/eval-test --methods bicubic,srresnet,srgan --images 20 --out $(DEMO)/study
	$(BIN)/medsr mos serve $(DEMO)/study

test: install
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/python -m pytest -n auto -q

bench: install
	$(BIN)/python benchmarks/bench_prepare.py
	$(BIN)/python benchmarks/bench_evaluate.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_infer.py
	$(BIN)/python benchmarks/bench_enhance_memory.py
	$(BIN)/python benchmarks/bench_quality.py --budget 10m
	$(BIN)/python benchmarks/bench_onnx.py

# Retrain the built-in model medsr-x4 from the sample data and write it into the package, with the
# held-out scores that `medsr models` and its card (docs/models/medsr-x4.md) quote. Resumes an
# interrupted run. About 75 minutes on 2 CPU cores (the card states the measured time).
model: install
	$(BIN)/medsr run configs/demo.yaml --until prepare
	if [ -f $(ZOO)/last.pt ]; then $(BIN)/medsr train configs/zoo/medsr_x4.yaml --resume; \
	else $(BIN)/medsr train configs/zoo/medsr_x4.yaml; fi
	$(BIN)/medsr evaluate $(DEMO)/dataset --split test --model $(ZOO)/last.pt --model nearest --model bilinear \
	  --model bicubic --model lanczos --figures 0 --out $(ZOO)/eval-test
	$(BIN)/medsr export $(ZOO)/last.pt -o $(WEIGHTS)/medsr-x4.safetensors --name medsr-x4 --version 1 \
	  --evaluation $(ZOO)/eval-test/summary.json \
	  --description "SPAN x4 (0.41 M parameters) trained on the sample data's CT, MR and radiographs"

clean:
	rm -rf $(VENV) runs .pytest_cache
