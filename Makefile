# mlops.platform: the commands a newcomer runs (see README.md). Every target installs
# what it needs itself and is safe to run again.
SHELL := /bin/bash
.DEFAULT_GOAL := help

DEBIAN ?= 12 13
SCENARIO ?=

.PHONY: help deps images minio testbed test lint yamllint ansible-lint sanity units jobs integration molecule demo demo-destroy bench bench-artifacts bench-jobs gpu-check build

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

deps: ## Install apt packages, podman config, the pinned virtual environment (.venv)
	@bash hack/bootstrap.sh

images: deps ## Build the Debian 12/13 systemd images for test hosts and the demo
	@bash hack/build-images.sh $(DEBIAN)

minio: ## Build minio and mc from their Go modules (cached by version)
	@bash hack/build-minio.sh

testbed: deps images minio ## Everything the tests need

test: ## The whole suite: lint, sanity, unit tests, molecule scenarios (stage durations printed)
	@bash hack/test.sh

lint: ## yamllint and ansible-lint (production profile)
	@bash hack/test.sh yamllint ansible-lint

yamllint: ## yamllint only
	@bash hack/test.sh yamllint

ansible-lint: ## ansible-lint only
	@bash hack/test.sh ansible-lint

sanity: ## ansible-test sanity on the collection's plugins
	@bash hack/test.sh sanity

units: ## pytest unit tests
	@bash hack/test.sh units

jobs: ## The job queue package (jobs/) against a throwaway PostgreSQL
	@bash hack/test.sh jobs

integration: ## Object storage modules against a real MinIO started on loopback
	@bash hack/test.sh integration

molecule: ## Molecule scenarios (SCENARIO="postgresql minio_single" DEBIAN=13 to narrow)
	@MOLECULE_SCENARIOS="$(SCENARIO)" MOLECULE_DEBIAN_VERSIONS="$(DEBIAN)" bash hack/test.sh molecule

demo: ## Deploy the platform onto a local sandbox container and print how to reach it
	@bash hack/demo.sh up

demo-destroy: ## Remove the sandbox container and its network (credentials in .demo/ are kept)
	@bash hack/demo.sh down

bench: ## Throughput and memory against the seed tutorial's plain server, on the demo sandbox
	@bash hack/bench.sh

bench-artifacts: ## Large artifacts through the gateway against the same client straight to the store, on the demo sandbox
	@bash hack/bench_artifacts.sh

bench-jobs: deps ## Job queue and runner agent: submit-to-RUNNING latency and slot utilization
	@.venv/bin/python hack/bench_jobs.py

gpu-check: ## On a machine with NVIDIA GPUs: the runner's GPU detection, CUDA smoke test and per-job device isolation
	@PYTHONPATH=jobs/src python3 hack/gpu_check.py

build: deps ## Build the collection tarball
	@.venv/bin/ansible-galaxy collection build --force
