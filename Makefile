# Waybill — targets a newcomer can guess.
#   make run    the demo: orchestrator + simulated Odoo, warehouse and carrier (1,000 orders)
#   make test   every test (unit, property, conformance, end-to-end)
#   make bench  the benchmark table (docs/benchmarks.md)
#   make lint   rustfmt + clippy, warnings are errors
SHELL := /bin/bash
CARGO ?= cargo
ORDERS ?= 1000
export CARGO_TERM_COLOR ?= never

.PHONY: run test bench lint fmt build clean

build:
	$(CARGO) build --release --bin waybill

run: build
	./target/release/waybill run --orders $(ORDERS)

test:
	$(CARGO) build --bin waybill
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		$(CARGO) test --workspace --no-fail-fast; \
	fi
	$(CARGO) test --workspace --doc

bench:
	$(CARGO) bench -p waybill-server --bench pipeline

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
