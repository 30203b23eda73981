# lightning_electra: one target per paper figure or table. `make help` lists them.
#   SCALE=smoke|cpu|tiny|small|base  (default: smoke without a GPU, tiny with one)
#   DATA_DIR=/path/to/data        (holds corpus/, glue/, vocab/; e.g. ../shared/data)
#   OVERRIDES="key=value ..."     (any config key, for the sweeps, pretrain, the benchmarks and export:
#                                  e.g. OVERRIDES="train.steps=100 finetune.seeds=1")
#   ARGS="--flag ..."             (a tool's own flags: benchmark, benchmark-finetune; e.g. ARGS="--seeds 10")
#   DEVICES=N NUM_NODES=M         (GPUs per machine, machines; default: every GPU, 1; see docs/clusters.md)
#   RUNS=a,b                      (a sweep in pieces: only these runs now; the table and report take all finished)
#   PLAN=1 | PLAN=csv             (print each run's steps, FLOPs, checkpoints, fine-tunes and estimated minutes; stop)
#   PARALLEL=N                    (N runs at once on this machine's device, each its own process; with PLAN, the time)
#   BUDGET_MINUTES=M              (with PLAN: whether the sweep fits M minutes, else RUNS= pieces that do)
SHELL := /bin/bash
PYTHON ?= python3
SCALE ?=
OVERRIDES ?=
ifneq ($(DATA_DIR),)
export DATA_DIR
endif
ifneq ($(DEVICES),)
export DEVICES
endif
ifneq ($(NUM_NODES),)
export NUM_NODES
endif
# A key=value word after the target that is a config key (make weight-sharing train.lr=1e-3, make pretrain
# variant=bert: a key with a dot, or one of the config's top-level ones) is a config override: make would take it
# for a make variable and drop it, so it joins OVERRIDES.
CONFIG_TOP_KEYS := variant name scale results_dir
override OVERRIDES += $(strip $(foreach v,$(.VARIABLES),$(if $(and $(or $(findstring .,$(v)),$(filter $(CONFIG_TOP_KEYS),$(v))),$(filter command line,$(origin $(v)))),$(v)=$($(v)))))
CLI = $(PYTHON) -m lightning_electra
RUN_SWEEP = $(CLI) sweep $(if $(SCALE),--scale $(SCALE)) $(if $(RUNS),--runs $(RUNS)) \
	$(if $(PARALLEL),--parallel $(PARALLEL)) $(if $(BUDGET_MINUTES),--budget-minutes $(BUDGET_MINUTES)) \
	$(if $(PLAN),--plan $(if $(filter csv,$(PLAN)),--csv)) $(1) $(OVERRIDES)

.PHONY: help install data test test-integration test-full-data test-all ablation-training-algorithms weight-sharing generator-size efficiency \
	small-model amos all-sweeps pretrain benchmark benchmark-finetune gpu-window land-window reports export clean-results

help:  ## list every target
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-30s %s\n", $$1, $$2}'

install:  ## install the suite (pip install -e .: deps, the lightning-electra command); torch first if missing, pinned
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install torch==2.13.0
	$(PYTHON) -m pip install -e ".[dev]"

data:  ## the corpus (wikitext-103) and all GLUE tasks from the Hugging Face hub into $(DATA_DIR) or ./data
	$(CLI) data $(ARGS)

test:  ## run the fast test suite (the CI's): no data needed, the tests carry theirs (tests/fixtures/)
	$(PYTHON) -m pytest -q --timeout 180 -m "not slow and not full_data and not integration"

test-integration:  ## the integration tier (minutes: every objective learns, ...), which CI also runs
	$(PYTHON) -m pytest -q -m "integration and not full_data"

test-full-data:  ## the tests that need the whole data directory: make test-full-data DATA_DIR=../shared/data
	$(PYTHON) -m pytest -q -m "full_data and not slow"

test-all:  ## run every test, slow and full-data ones included
	$(PYTHON) -m pytest -q

ablation-training-algorithms:  ## paper Fig. 3 right: BERT, joint, two-stage, adversarial; GLUE vs pre-train FLOPs
	$(call RUN_SWEEP,training-algorithms)

weight-sharing:  ## paper sec. 3.2: equal-size G and D sharing no / embedding / all weights; plus DeBERTa-v3 GDES
	$(call RUN_SWEEP,weight-sharing)

generator-size:  ## paper Fig. 3 left: GLUE vs generator width (1/8 ... 1 of D) and a unigram generator
	$(call RUN_SWEEP,generator-size)

efficiency:  ## paper Table 5: ELECTRA, All-Tokens MLM, Replace MLM, ELECTRA-15%, BERT
	$(call RUN_SWEEP,efficiency)

small-model:  ## paper Table 1: ELECTRA vs BERT with GLUE at 6.25, 12.5, 25, 50, 100% of the budget
	$(call RUN_SWEEP,small-model)

amos:  ## AMOS (Meng et al. 2022): ELECTRA vs the adversarial mixture of exits and its ablations; exit weights
	$(call RUN_SWEEP,amos)

all-sweeps: ablation-training-algorithms weight-sharing generator-size efficiency small-model amos  ## every sweep above

pretrain:  ## pre-train one config, no fine-tuning: make pretrain OVERRIDES="variant=bert train.steps=100"
	$(CLI) pretrain $(if $(SCALE),--scale $(SCALE)) $(OVERRIDES)

benchmark:  ## pre-training throughput of every variant vs a plain transformers baseline -> analysis/reports/benchmark/
	$(CLI) benchmark $(ARGS) $(OVERRIDES)

benchmark-finetune:  ## GLUE fine-tuning time, seeds one by one vs one batched ensemble -> analysis/reports/benchmark/
	$(CLI) benchmark-finetune $(if $(SCALE),--scale $(SCALE)) $(ARGS) $(OVERRIDES)

gpu-window:  ## one lent GPU's command (<= 9 min): step-graph check, benchmark, plan, a timed sweep -> OUT/window.{tar.gz,txt}
	$(if $(OUT),,$(error make gpu-window needs OUT=<dir>; see experiments/gpu_window.sh for SWEEP, SCALE, PARALLEL))
	$(if $(SCALE),SCALE=$(SCALE)) $(if $(PARALLEL),PARALLEL=$(PARALLEL)) experiments/gpu_window.sh "$(OUT)"

land-window:  ## what a GPU window brought back -> analysis/reports/ (and the index), to commit: make land-window FROM=<dir>
	$(if $(FROM),,$(error make land-window needs FROM=<the folder holding window.tar.gz and window.txt>))
	PYTHON=$(PYTHON) experiments/land_window.sh "$(FROM)"

reports:  ## re-render every report under analysis/reports/ from its results table (no training, no GPU)
	$(CLI) report

export:  ## a run's models in transformers' format: make export CKPT=<run dir or .ckpt> OUT=<dir>
	$(if $(and $(CKPT),$(OUT)),,$(error make export needs CKPT=<run dir, last.ckpt or checkpoints/step-*> OUT=<dir>))
	$(CLI) export $(CKPT) $(OUT) $(OVERRIDES)

clean-results:  ## delete results/ (run directories, checkpoints); reports stay
	rm -rf results
