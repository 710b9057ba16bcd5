# Benchmarks (see docs/benchmarks.md). Both print one JSON document on stdout.
CARGO_TARGET_DIR ?= $(CURDIR)/target-bench
export CARGO_TARGET_DIR
BENCH_ARGS ?=

.PHONY: bench-create bench-disk bench-workspace bench-snapshot

# banger vm create vs the same QEMU command line run bare; needs root.
# BENCH_ARGS="--iterations 10 --warmup 1" to change the run.
bench-create:
	cargo build --release -p banger-cli -p bangerd
	cargo build --release -p banger-testkit --example bench_create
	BANGER_AGENT_BIN="$$(scripts/build-agent.sh release)" \
		"$(CARGO_TARGET_DIR)/release/examples/bench_create" $(BENCH_ARGS)

# Cold create, pause, resume and fork to SSH, side by side (docs/snapshots.md);
# needs root. BENCH_ARGS="--iterations 5 --warmup 0" to change the run.
bench-snapshot:
	cargo build --release -p banger-cli -p bangerd
	cargo build --release -p banger-testkit --example bench_snapshot
	BANGER_AGENT_BIN="$$(scripts/build-agent.sh release)" \
		"$(CARGO_TARGET_DIR)/release/examples/bench_snapshot" $(BENCH_ARGS)

# Work-seed clone + grow and overlay creation (docs/disks.md).
bench-disk:
	cargo run --release -p banger-host --example disk_bench

# vm workspace prepare vs `git archive HEAD | ssh VM tar -x` on a running VM
# (docs/workspaces.md): make bench-workspace VM=devbox
bench-workspace:
	cargo build --release -p banger-workspace --example bench_prepare
	"$(CARGO_TARGET_DIR)/release/examples/bench_prepare" --vm "$(VM)" $(BENCH_ARGS)
