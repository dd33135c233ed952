# smolvm — the two commands a newcomer needs (see README.md):
#   make demo   build everything (installs what is missing) and run hello.vm
#   make test   run the whole test suite
# Both are idempotent: apt packages, the cached guest kernel and cargo
# artifacts are only (re)built when missing or out of date.

SHELL := /bin/bash
CARGO ?= cargo
SMOLVM := target/release/smolvm
APT_PACKAGES := build-essential linux-source-6.1 bc flex bison libelf-dev libssl-dev \
	busybox-static squashfs-tools qemu-system-x86 hyperfine cpio xz-utils lz4 zstd \
	python3 libpython3.11-testsuite sqlite3 git openssl fio postgresql e2fsprogs dash \
	passt musl-tools iproute2 util-linux redis-server redis-tools docker-registry apache2-utils

.PHONY: deps build kernel demo test size bench compat

# Install the Debian packages a fresh machine lacks (needs root or sudo).
deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi

# Host tools and the two no_std binaries that go into every image.
build: deps
	$(CARGO) build --release -p builder
	# One invocation each: cargo unifies features within an invocation, and the
	# builder's linker/std would drag std into the no_std binaries (duplicate panic_impl).
	$(CARGO) build --release -p vmm-stub
	# The stub that checks image signatures under a host trust policy
	# (feature `trust`, +11.6 KB: docs/DEPLOY.md); its own target dir.
	$(CARGO) build --release -p vmm-stub --features trust --target-dir target/trust
	$(CARGO) build --release -p smol-init

# The guest kernel, cached under $${SMOLVM_CACHE:-~/.cache/smolvm} (~4 min the first time).
kernel: build
	$(SMOLVM) kernel build

demo: kernel
	./demo/run.sh

# Unit tests, bare-metal guests under /dev/kvm, Linux guests under QEMU TCG,
# whole images through the KVM lab (or directly on hardware KVM), then the
# size budgets on the reference images.
test: kernel
	$(CARGO) test --workspace --release
	$(CARGO) test --release -p vmm-stub --features trust --target-dir target/trust --lib trust
	./size-report/reference-images.sh

# The whole compatibility suite (docs/COMPAT.md): python3's regression tests
# beside the host's, fio, openssl, PostgreSQL, ... in the KVM lab (long: ~1 h
# on this 2-core host). `make test` runs its fast part.
compat: kernel
	$(CARGO) test --release -p smolvm-tests --test compat_e2e -- --include-ignored --nocapture

size: build
	./size-report/reference-images.sh

# Benchmarks side by side with QEMU, the KVM floor and Debian's kernel, one run
# (~14 min on this loaded 2-core host, ~10 of them in the KVM lab: I/O and boot
# beside QEMU's devices): writes docs/bench/results.json, README.md and SVG charts.
bench: kernel
	./bench/run
