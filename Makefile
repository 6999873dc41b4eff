# breedops: every workflow is a target here. `make help` lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
MAKEFLAGS += --no-print-directory

ENV ?= local
PYTHON ?= python3
VENV ?= .venv
TOOLS_VENV ?= .venv-tools
STATE_DIR ?= .local
BIN := $(VENV)/bin
TOOLS_BIN := $(TOOLS_VENV)/bin
PY := $(BIN)/python
TERRAFORM ?= terraform
# Build outputs have one place, breedops.settings: it imports only the standard library, so
# no venv is needed to ask it. Expanded only where used.
settings = $(shell PYTHONPATH=src $(PYTHON) -c 'from breedops import settings; print(settings.$(1))')
BUILD_DIR = $(call settings,build_dir())
PLAN_JSON = $(call settings,plan_json_file("$(ENV)"))
# The aws root keeps its state in S3 with use_lockfile, which needs Terraform 1.10.
TERRAFORM_MIN_VERSION := $(if $(filter aws,$(ENV)),1.10.0,1.7.0)
PYTEST_ARGS ?=
# make apply: the data set (digits, dog-images or a folder) and the tuning job's size (default:
# the preset's, 2 trials at once for digits, 4 two at a time for dog-images).
DATASET ?= digits
TRIALS ?=
PARALLEL ?=
EPOCHS ?=
# Hyperparameter preset (default: the dataset's; a folder gets digits') and a local pretrained
# weights file for the jobs (default: torchvision downloads them).
PRESET ?=
WEIGHTS ?=
# The flags of the options given: one left empty is the pipeline's default.
APPLY_FLAGS = $(strip $(if $(TRIALS),--trials $(TRIALS)) \
  $(if $(PARALLEL),--parallel-trials $(PARALLEL)) $(if $(EPOCHS),--epochs $(EPOCHS)) \
  $(if $(PRESET),--preset $(PRESET)) $(if $(WEIGHTS),--weights $(WEIGHTS)))

# The stamp's name carries a hash of the pins, so `make setup` reinstalls exactly when they change.
SETUP_STAMP := $(VENV)/.setup-$(shell cat requirements.lock pyproject.toml 2>/dev/null | sha256sum | cut -c1-16)
TOOLS_STAMP := $(TOOLS_VENV)/.setup-$(shell cat requirements-tools.lock 2>/dev/null | sha256sum | cut -c1-16)

# Terraform provider installation: an offline filesystem mirror when one is found (or given as
# TF_PLUGIN_MIRROR=dir), the public registry otherwise. The mirror is looked for in Terraform's
# implied local mirror directories and in top-level folders of /opt that hold a registry tree.
TF_PLUGIN_MIRROR ?= $(patsubst %/registry.terraform.io,%,$(firstword $(wildcard \
	$(HOME)/.terraform.d/plugins/registry.terraform.io \
	$(HOME)/.local/share/terraform/plugins/registry.terraform.io \
	/usr/local/share/terraform/plugins/registry.terraform.io \
	/usr/share/terraform/plugins/registry.terraform.io \
	/opt/*/registry.terraform.io)))
TF_CLI_CONFIG := $(STATE_DIR)/terraform.rc
export TF_CLI_CONFIG_FILE := $(abspath $(TF_CLI_CONFIG))
export TF_IN_AUTOMATION := 1

.PHONY: help  ## list the targets with one line each
help:
	@echo "breedops — make targets (ENV=$(ENV); ENV=aws targets a real account)"
	@grep -E '^\.PHONY: [a-z-]+ +## ' $(MAKEFILE_LIST) | sed -E 's/^\.PHONY: ([a-z-]+) +## (.*)/  \1|\2/' | column -t -s '|'

.PHONY: setup  ## create .venv and .venv-tools with the pinned dependencies (idempotent)
setup: venv $(TOOLS_STAMP)

# What running the pipeline needs; the tools venv serves only lint, plan's review and the tests,
# so a fresh clone's `make apply` does not wait for it.
.PHONY: venv
venv: $(SETUP_STAMP) $(TF_CLI_CONFIG)

$(SETUP_STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "breedops needs Python >= 3.11; set PYTHON=python3.11 (or newer)")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.setup-* && touch $@

# checkov and the IAM linter pin their own boto3, so they live in a venv of their own.
$(TOOLS_STAMP): requirements-tools.lock
	@test -x $(TOOLS_BIN)/python || $(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_BIN)/pip install --quiet -r requirements-tools.lock
	@rm -f $(TOOLS_VENV)/.setup-* && touch $@

$(TF_CLI_CONFIG): Makefile
	@mkdir -p $(STATE_DIR)
	@if [ -n "$(TF_PLUGIN_MIRROR)" ]; then \
	  printf 'provider_installation {\n  filesystem_mirror {\n    path    = "%s"\n    include = ["registry.terraform.io/hashicorp/*"]\n  }\n  direct {\n    exclude = ["registry.terraform.io/hashicorp/*"]\n  }\n}\n' "$(abspath $(TF_PLUGIN_MIRROR))" > $@; \
	  echo "terraform: providers from the filesystem mirror $(abspath $(TF_PLUGIN_MIRROR))"; \
	else \
	  printf 'provider_installation {\n  direct {}\n}\n' > $@; \
	  echo "terraform: no provider mirror found; providers come from the public registry"; \
	fi

.PHONY: check-terraform
check-terraform:
	@command -v $(TERRAFORM) >/dev/null || { echo "error: terraform not found on PATH. Install Terraform >= $(TERRAFORM_MIN_VERSION) (https://developer.hashicorp.com/terraform/install)." >&2; exit 1; }
	@v=$$($(TERRAFORM) version -json | $(PYTHON) -c 'import json,sys; print(json.load(sys.stdin)["terraform_version"])'); \
	 [ "$$(printf '%s\n%s\n' "$(TERRAFORM_MIN_VERSION)" "$$v" | sort -V | head -1)" = "$(TERRAFORM_MIN_VERSION)" ] || { echo "error: terraform $$v is too old; breedops needs >= $(TERRAFORM_MIN_VERSION)." >&2; exit 1; }

.PHONY: up  ## start the local AWS emulator and local hosting in the background (ENV=local)
up: venv
	$(PY) -m breedops local up

.PHONY: down  ## stop the local services; their state is kept for the next `make up`
down:
	@if [ -x $(PY) ]; then $(PY) -m breedops local down; else echo "nothing to stop (no $(VENV))"; fi

.PHONY: status  ## show whether the local services run, and where
status: venv
	$(PY) -m breedops local status

.PHONY: lambda  ## build the reproducible Lambda zip that Terraform deploys (prints its path)
lambda: venv
	$(PY) -m breedops lambda build

.PHONY: tf-apply  ## terraform apply of ENV's root alone (base, plus serving once an artifact exists)
tf-apply: venv check-terraform lambda
	$(PY) -m breedops terraform apply --env $(ENV)

.PHONY: plan  ## terraform plan of ENV into plan.json and PLAN.md (PLAN_ARGS=--fail-on-protected)
plan: setup check-terraform lambda $(if $(filter local,$(ENV)),up)
	$(PY) -m breedops terraform plan --env $(ENV) $(PLAN_ARGS)

.PHONY: apply  ## run the whole pipeline: base, data, tuning, training, serving, smoke test
apply: venv check-terraform lambda
	$(PY) -m breedops pipeline apply --env $(ENV) --dataset $(DATASET) $(APPLY_FLAGS)

.PHONY: destroy  ## destroy serving and base resources (the data bucket stays unless FORCE=1)
destroy: venv check-terraform
	$(PY) -m breedops terraform destroy --env $(ENV) $(if $(filter 1,$(FORCE)),--force)

.PHONY: lint  ## ruff, import layers, terraform fmt/validate, module READMEs, checkov, workflow and IAM linters
lint: setup check-terraform
	$(BIN)/ruff check src tests lambda scripts
	PYTHONPATH=src $(TOOLS_BIN)/lint-imports
	$(TERRAFORM) fmt -check -recursive terraform
	$(PY) -m breedops terraform validate-all
	$(PY) -m breedops.review.module_docs --check
	$(TOOLS_BIN)/checkov --quiet --compact --skip-download -d terraform --framework terraform
	$(TOOLS_BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(TOOLS_BIN)/zizmor --offline --quiet .github/workflows
	@# The IAM linter reads the policies rendered in the last `make plan` of ENV, when there is one.
	@plan="$(PLAN_JSON)"; if [ -f "$$plan" ]; then \
	  $(PY) -m breedops.review.iam_lint --skip-unrendered "$$plan"; \
	else echo "iam lint: no $$plan yet; run \`make plan\` to lint the policies"; fi

.PHONY: test-only  ## pytest and terraform test, without lint
test-only: setup check-terraform lambda
	$(PY) -m breedops terraform test-modules
	@rc=0; $(BIN)/pytest $(PYTEST_ARGS) || rc=$$?; \
	 if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; rc=0; fi; exit $$rc

.PHONY: test  ## lint, then every test (starts and stops the local services it needs)
test: lint test-only

.PHONY: docs  ## regenerate the Inputs/Outputs tables of terraform/modules/*/README.md
docs: venv
	$(PY) -m breedops.review.module_docs

.PHONY: bench  ## one benchmark run into benchmarks/results/<run-id>.json; the docs generated from it
bench: setup
	$(PY) -m breedops bench run

.PHONY: clean  ## remove build outputs (keeps the venvs and the emulator state)
clean:
	rm -rf "$(BUILD_DIR)" .pytest_cache
