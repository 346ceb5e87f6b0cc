# Waybill — targets a newcomer can guess.
#   make run    the demo: orchestrator + simulated Odoo, warehouse and carrier (1,000 orders)
#   make test   every test (unit, property, conformance, end-to-end)
#   make bench  the benchmark table (docs/benchmarks.md)
#   make bench-growth   cost as history grows (10k/100k/1M orders; not in `make bench`)
#   make load   the load test: orders end to end through ingestion, connectors and doubles (not in `make test`)
#   make lint   rustfmt + clippy, warnings are errors
#   make fuzz   coverage-guided fuzzing of the edge, FUZZ_SECS per target (nightly; not in `make test`)
#   make deploy-check   validate the Kubernetes manifests, dashboard and alerts offline
#   make browser   install Chromium and ChromeDriver for the workbench's browser tests (part of `make test`)
SHELL := /bin/bash
CARGO ?= cargo
ORDERS ?= 1000
export CARGO_TERM_COLOR ?= never

.PHONY: run test test-kafka bench bench-kafka bench-growth load fuzz lint fmt build clean deploy-check deploy-check-self-test prereqs browser

# librdkafka (built from source by rdkafka-sys) links the system's OpenSSL and zlib.
prereqs:
	@if ! pkg-config --exists openssl zlib 2>/dev/null; then \
		echo "installing the C libraries librdkafka links: libssl-dev zlib1g-dev pkg-config"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libssl-dev zlib1g-dev pkg-config; \
	fi

# The web workbench's tests (tests/workbench_web.rs) drive a real headless Chromium through
# ChromeDriver: Debian's chromium and chromium-driver (/usr/bin/chromium,
# /usr/bin/chromedriver), with a font for the screenshots.
browser:
	@if [ ! -x /usr/bin/chromedriver ] || [ ! -x /usr/bin/chromium ]; then \
		echo "installing the browser the workbench tests drive: chromium chromium-driver fonts-liberation"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-liberation; \
	fi

build: prereqs
	$(CARGO) build --release --bin waybill

run: build
	./target/release/waybill run --orders $(ORDERS)

# The schema registry test (tests/registry.rs) reads the topics with confluent-kafka's
# Python client, from a venv scripts/registry-venv.sh installs once into
# ~/.cache/waybill/registry-venv.
# The Kafka tests run in the same pass: a Kafka-protocol broker (Tansu, built once into
# ~/.cache/waybill/tansu) on 127.0.0.1:19092 for the conformance and group tests, and
# per-test brokers on free ports for the scale-out and cut-batch tests (tests/kafka_scale.rs,
# tests/cut_batch.rs).
# The workbench's browser tests need Chromium and ChromeDriver (`make browser`).
test: prereqs browser
	scripts/broker.sh start
	scripts/registry-venv.sh
	$(CARGO) build --bin waybill
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		$(CARGO) test --workspace --no-fail-fast; \
	fi; rc=$$?; \
	$(CARGO) test --workspace --doc || rc=1; \
	scripts/broker.sh stop; exit $$rc
	scripts/deploy-check.sh
	scripts/deploy-check.sh --self-test

bench: prereqs
	$(CARGO) bench -p waybill-server --bench pipeline
	$(CARGO) bench -p waybill-server --bench approvals
	$(CARGO) bench -p waybill-server --bench workbench
	$(CARGO) bench -p waybill-server --bench tracing
	WAYBILL_BENCH_TRACING_UPSTREAM=1 $(CARGO) bench -p waybill-server --bench tracing
	$(CARGO) bench -p waybill-connect --bench delivery
	$(MAKE) bench-kafka

# Cost as history grows: the saga-drain path at 10k, 100k and 1M orders of history with
# finished flows retired and the embedded log's retention applied, and a fresh replica's
# restore from the saga state snapshot beside one from the whole journal
# (docs/benchmarks.md, "Growth"; about 10 minutes and 5 GB of /tmp at 1M). E.g.
# `make bench-growth GROWTH_SIZES=10000,100000`.
GROWTH_SIZES ?= 10000,100000,1000000
bench-growth: prereqs
	WAYBILL_BENCH_GROWTH_SIZES=$(GROWTH_SIZES) $(CARGO) bench -p waybill-server --bench growth

# `waybill load`: `waybill serve` as a child process on the embedded log, the warehouse,
# carrier, finance and Odoo as HTTP doubles, closed-loop clients posting orders through
# authenticated ingestion and following them over gRPC `WatchOrder`; prints completions/s,
# latency and CPU per order (docs/benchmarks.md, "Load test"). E.g.
# `make load LOAD_ARGS="--rate 100 --scenario cutoff --orders 4800"`.
LOAD_ARGS ?= --concurrency 16 --orders 2000
load: build
	./target/release/waybill load $(LOAD_ARGS)

# Waybill through the Kafka backend against a raw rdkafka pipe, on a fresh Tansu broker of
# its own (restarted here, pid and log in target/broker-bench; BENCH_BROKER_PORT if 19092
# is taken, e.g. by make test-kafka).
BENCH_BROKER_PORT ?= 19092
BENCH_BROKER = WAYBILL_BROKER_PORT=$(BENCH_BROKER_PORT) WAYBILL_BROKER_DIR=$(CURDIR)/target/broker-bench scripts/broker.sh
bench-kafka: prereqs
	$(BENCH_BROKER) stop
	$(BENCH_BROKER) start
	WAYBILL_BENCH_KAFKA=127.0.0.1:$(BENCH_BROKER_PORT) $(CARGO) bench -p waybill-server --features kafka --bench kafka; \
		rc=$$?; $(BENCH_BROKER) stop; exit $$rc

# Only the Kafka tests: the backend against a real Kafka-protocol broker (Tansu) and
# librdkafka's mock cluster, consumer groups, scale-out through the binary, and a batch
# cut short (exactly-once effect without transactions).
test-kafka: prereqs
	scripts/broker.sh start
	scripts/registry-venv.sh
	$(CARGO) build --bin waybill
	$(CARGO) test -p waybill-log --features kafka --test kafka_conformance --test kafka_group --test kafka_mock \
		&& $(CARGO) test -p waybill-server --test kafka_scale --test cut_batch --test registry; \
		rc=$$?; scripts/broker.sh stop; exit $$rc

# Renders the Kubernetes manifests, validates them offline against the Kubernetes
# schemas, lints YAML/Dockerfile/shell, and checks dashboard/alerts/runbook use real metrics
# (declared in crates/telemetry/src/metrics.rs and emitted somewhere in crates/).
deploy-check:
	scripts/deploy-check.sh

# Proves deploy-check fails on deliberately broken manifests.
deploy-check-self-test:
	scripts/deploy-check.sh --self-test

# Fuzzes the Avro and JSON decoders, the embedded log's recovery and the control plane's
# request checks for FUZZ_SECS each (cargo-fuzz on the nightly toolchain, installed here
# if missing); figures and how to read them: docs/benchmarks.md, "Fuzzing".
FUZZ_SECS ?= 60
fuzz:
	FUZZ_SECS=$(FUZZ_SECS) scripts/fuzz.sh $(FUZZ_TARGETS)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
