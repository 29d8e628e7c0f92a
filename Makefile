# i2i: conditional image-to-image GANs (CoModGAN) on PyTorch Lightning.
# `make help` lists the targets.

.DEFAULT_GOAL := help
SHELL := /bin/bash
PY := .venv/bin/python
TASK ?= demo
ARGS ?=
export UV_COMPILE_BYTECODE := 1
export UV_PYTHON_DOWNLOADS := never

.PHONY: help install train try test test-full lint bench compare docs

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "  TASK=<name> picks configs/<name>.yaml for train (default: demo; the same as --config <name>); ARGS='--flag=value ...' adds CLI overrides"
	@echo "  resume a stopped run: ARGS='--ckpt_path last'; start afresh in a used run folder: ARGS=--overwrite"

install: ## Create .venv with the pinned, tested stack (uv, from uv.lock)
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet "uv==0.13.8"
	uv sync --frozen --extra dev
	@# uv compiles the packages it installs, not i2i's own editable sources: compiled here once,
	@# each i2i process starts without compiling them, even where PYTHONDONTWRITEBYTECODE is set
	$(PY) -m compileall -q src tests benchmarks

train: ## Train configs/$(TASK).yaml (default: the embedded demo, no download)
	@# configs/ holds the packaged experiments; its folders hold fragments, which are no TASK
	@if [ ! -f configs/$(TASK).yaml ] || [[ "$(TASK)" == */* ]]; then \
		echo "Unknown TASK=$(TASK). Available: $$(ls configs | sed -n 's/\.yaml$$//p' | tr '\n' ' ')"; exit 2; fi
	$(PY) -m i2i fit --config configs/$(TASK).yaml $(ARGS)

RUN ?= runs/demo
CLASSICAL ?= biharmonic
try: ## After `make train`: the trained model inpaints 8 held-out scenes with `i2i inpaint`, beside a classical fill, and both are scored (RUN=runs/demo, CLASSICAL=biharmonic)
	$(PY) -m i2i.data.synthetic --out $(RUN)/heldout --count 8
	$(PY) -m i2i inpaint $(RUN)/checkpoints/last.ckpt --image $(RUN)/heldout/images \
		--mask $(RUN)/heldout/masks --mask-polarity white_is_hole --num-samples 3 --panel \
		--overwrite --out $(RUN)/inpainted
	$(PY) -m i2i inpaint classical:$(CLASSICAL) --image $(RUN)/heldout/images \
		--mask $(RUN)/heldout/masks --mask-polarity white_is_hole --overwrite --out $(RUN)/classical
	$(PY) -m i2i.inference.sheet $(RUN)/inpainted --out $(RUN)/inpainted.png \
		--classical $(RUN)/classical --classical-name classical:$(CLASSICAL) --heldout $(RUN)/heldout
	@if command -v xdg-open >/dev/null 2>&1 && [ -n "$$DISPLAY" ]; then xdg-open $(RUN)/inpainted.png; fi

TEST_WORKERS ?= 2
test: ## Run the fast test suite (slow and GPU tests excluded), TEST_WORKERS=2 processes (pytest-xdist)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test-full: ## Run every test, slow ones included (GPU tests skip without a GPU)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder -m ""

lint: ## Ruff lint and format check of the sources, tests, benchmarks and the docs hooks (`ruff format` fixes the format)
	.venv/bin/ruff check src tests benchmarks docs/hooks
	.venv/bin/ruff format --check src tests benchmarks docs/hooks

bench: ## Speed benchmarks: backbone vs the FLOPs floor, masks/s, training throughput, P-IDS vs sklearn, GPU rows, shards vs folder loading, ONNX / torch.export vs eager, i2i vs the CoModGAN port
	$(PY) -m benchmarks.backbone
	$(PY) -m benchmarks.training
	$(PY) -m benchmarks.metrics
	$(PY) -m benchmarks.gpu
	$(PY) -m benchmarks.export
	$(PY) -m benchmarks.loading --compression zstd
	$(PY) -m benchmarks.port --if-present

docs: ## Build the documentation site into site/ (MkDocs Material; --strict: a broken link or reference fails)
	NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict

compare: ## Every system and the classical baselines on the embedded demo data, one seed, one budget, one table (ARGS='--kimg 4' or '--minutes 5')
	$(PY) -m i2i compare $(ARGS)
