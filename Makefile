# Entry points for a fresh machine. Every target installs what it needs first.
# `make help` lists the targets; docs/reference/make-targets.md is generated from the ## lines and these comments.

# The Python (3.11+) that creates the virtualenv.
PYTHON ?= python3
# The project's virtualenv (make venv).
VENV ?= .venv
PY := $(VENV)/bin/python
LOCALKUBE := $(PY) -m localkube
# Extra pytest arguments for make test and make unit-test, e.g. PYTEST_ARGS='-k rotation -x'.
PYTEST_ARGS ?=
# How many pytest workers make test runs, each with its own local cluster and whole test files (mostly waiting on
# pods, the suite leaves cores idle); 1 runs it in one process.
TEST_WORKERS ?= 2
# Extra go test arguments for make go-test, e.g. GO_TEST_ARGS=-v.
GO_TEST_ARGS ?=
# Where the demo's certificates come from: azureKeyVault (the Key Vault emulator in the local cluster) or selfSigned.
SOURCE ?= azureKeyVault
# make keyvault-certs VAULT_URL=https://<name>.vault.azure.net fills a real vault (DefaultAzureCredential).
VAULT_URL ?=
# Extra arguments of make keyvault-certs, e.g. KEYVAULT_ARGS=--rotate (new versions of the leaves).
KEYVAULT_ARGS ?=
# Where make docs-serve listens.
DOCS_ADDR ?= 127.0.0.1:8001
# make demo POSTGRES=1: PostgreSQL 15 in the cluster and frontend/history/matching/worker as scaled Deployments.
POSTGRES ?=
DEMO_ARGS := --source $(SOURCE)$(if $(POSTGRES), --postgres)
HELLO_VALUES := $(if $(filter azureKeyVault,$(SOURCE)),--set keyVaultCertificate=temporal-client-hello)

.PHONY: help env venv tools images kind-load temporal-cluster-mtls start-worker keyvault-certs down run install-crds lint bench bench-plots docs docs-serve docs-reference versions cluster-up cluster-down cluster-status demo test go-test unit-test clean

help: ## Every target with what it does (this list)
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "%-24s %s\n", $$1, $$2}'

venv: $(VENV)/.installed ## Python environment with the project and its test tools

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

tools: venv ## Build or fetch the pinned tools into the cache (seconds when cached; Lowkey Vault is skipped, with one line, without Java 25 or its source)
	$(LOCALKUBE) tools

images: venv ## Build the operator, worker and starter images (buildah; base from Debian packages when the default cannot be pulled; cached)
	$(PY) -m localkube.images_build

kind-load: images ## Load the three images into a kind cluster (KIND_CLUSTER=kind; needs kind on PATH)
	$(PY) -m localkube.images_build kind-load --name $(or $(KIND_CLUSTER),kind)

versions: tools ## Print the version each cached tool reports
	$(LOCALKUBE) versions

cluster-up: tools ## Start the local control plane (.localkube/default)
	$(LOCALKUBE) up

cluster-down: venv ## Stop the local control plane; no process is left behind
	$(LOCALKUBE) down

cluster-status: venv ## List the local control plane's processes
	$(LOCALKUBE) status

demo: tools images ## The main job on defaults: cluster, Key Vault emulator + certs, operator, TemporalCluster, apps, curl
	$(LOCALKUBE) demo $(DEMO_ARGS)

temporal-cluster-mtls: tools images ## Like the original sample: local cluster + operator + TemporalCluster with mTLS
	$(LOCALKUBE) demo --no-apps $(DEMO_ARGS)

start-worker: venv ## Like the original sample: helm-install the hello-world worker and starter
	$(LOCALKUBE) tools helm
	$$($(LOCALKUBE) which helm) --kubeconfig $$($(LOCALKUBE) kubeconfig) upgrade --install hello \
		charts/temporal-hello-world $(HELLO_VALUES) --wait --timeout 180s

keyvault-certs: venv ## Like the original sample: a CA and the cluster's and app's certificates into Key Vault
ifeq ($(VAULT_URL),)
	$(LOCALKUBE) tools kubectl lowkey-vault
	$(LOCALKUBE) keyvault-certs --client hello $(KEYVAULT_ARGS)
else
	$(PY) -m temporal_mtls_operator.keyvault --vault-url $(VAULT_URL) --client hello $(KEYVAULT_ARGS)
endif

down: venv ## Stop every local cluster in .localkube/ (make demo's, named ones, crashed test sessions)
	$(LOCALKUBE) down --all

run: venv ## Run the operator as a local process against the current kubeconfig (CRDs: make install-crds)
	$(PY) -m temporal_mtls_operator

install-crds: venv ## Apply crds/ to the current kubeconfig's cluster
	$(LOCALKUBE) tools kubectl
	$$($(LOCALKUBE) which kubectl) apply -f crds/

lint: venv ## helm lint of every chart; promtool check + test of the operator chart's alert rules (promtool: ~10 min cold build, once)
	$(LOCALKUBE) tools helm promtool
	$$($(LOCALKUBE) which helm) lint --strict charts/*
	$(PY) tools/check_prometheus_rules.py

bench: tools images ## Benchmarks (print tables, write bench/results/*.json), then their plots (bench/plot.py)
	$(PY) bench/pod_start.py
	$(PY) bench/cluster_ready.py
	$(PY) bench/workflows.py
	$(PY) bench/keyvault.py
	$(PY) bench/rotation.py
	$(PY) bench/rotation.py --server stock
	$(PY) bench/upgrade.py
	$(PY) bench/codec.py
	$(PY) bench/frontend_health.py
	$(PY) bench/authz.py
	$(PY) bench/scale.py
	$(PY) bench/plot.py

bench-plots: venv ## Plots (PNG) of the last benchmark run next to bench/results/*.json (make docs draws them too)
	$(PY) bench/plot.py

docs-reference: venv ## Regenerate docs/reference/ and the troubleshooting page from crds/, the operator's code and this Makefile
	$(PY) tools/docs/gen_reference.py

docs: docs-reference ## Build the documentation site into build/site (strict: a broken link, anchor or missing plot fails)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet

docs-serve: docs-reference ## Serve the documentation with live reload at http://$(DOCS_ADDR) (DOCS_ADDR=host:port)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs serve --strict --dev-addr $(DOCS_ADDR)

test: tools images go-test ## All tests: Go unit tests of server/, then unit and cluster tests against private local control planes (TEST_WORKERS)
	$(PY) -m pytest $(if $(filter-out 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

go-test: ## Go unit tests of our server build (server/: policy, certificate matching, reload, decisions), against each supported Temporal release; GO_TEST_ARGS=-v
	@# -trimpath, as make tools builds: the test build reuses the server build's compiled packages.
	cd server && GOTOOLCHAIN=local CGO_ENABLED=0 go test -trimpath -tags disable_grpc_modules $(GO_TEST_ARGS) ./...
	cd server && GOTOOLCHAIN=go1.26.10 CGO_ENABLED=0 go test -trimpath -modfile=go.1.32.mod -tags disable_grpc_modules $(GO_TEST_ARGS) ./...

unit-test: venv ## Only the tests that need no cluster
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

env: venv ## Print exports: cached tools on PATH, KUBECONFIG of the local cluster
	@$(LOCALKUBE) env

clean: venv ## Stop every local cluster and remove their state (the tool cache stays)
	$(LOCALKUBE) down --all
	rm -rf .localkube
