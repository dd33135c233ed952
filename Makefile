# smolvm — the two commands a newcomer needs (see README.md):
#   make demo   build everything (installs what is missing) and run hello.vm
#   make test   run the whole test suite
# Both are idempotent: apt packages, the cached guest kernel and cargo
# artifacts are only (re)built when missing or out of date.

SHELL := /bin/bash
CARGO ?= cargo
SMOLVM := target/release/smolvm
# Debian packages, by the command that needs them, installed without their
# Recommends (qemu-system-x86's alone are ~300 packages, GStreamer and speech
# recognition among them). README "Installing" has the figures and how they
# were measured.
# Build: the kernel (tinyconfig + objtool), mksquashfs, the lab's initramfs,
# and the builder's OCI client (native-tls: openssl-sys needs libssl-dev and
# pkg-config).
BUILD_PACKAGES := build-essential linux-source-6.1 bc flex bison libelf-dev xz-utils lz4 zstd \
	squashfs-tools cpio libssl-dev pkg-config
# The KVM lab (hosts whose /dev/kvm cannot boot Linux: no vmx/svm) and the QEMU TCG tests.
LAB_PACKAGES := qemu-system-x86 busybox-static passt
HOST_RUNS_LINUX := $(shell grep -qwE 'vmx|svm' /proc/cpuinfo 2>/dev/null && echo yes)
NEEDS_LAB := $(if $(HOST_RUNS_LINUX),$(filter always,$(SMOLVM_LAB)),yes)
# make demo: hello.vm and http-echo.vm (musl-gcc, passt); QEMU only where the lab runs them.
DEMO_PACKAGES := $(sort $(BUILD_PACKAGES) musl-tools passt $(if $(NEEDS_LAB),$(LAB_PACKAGES)))
# make test (`make deps`): TCG and lab tests, python3/git/sqlite3/redis images, a local OCI registry, ext4 disks, netns,
# systemd-analyze for the deployment unit.
APT_PACKAGES := $(BUILD_PACKAGES) $(LAB_PACKAGES) musl-tools python3 git sqlite3 e2fsprogs dash \
	iproute2 util-linux redis-server redis-tools docker-registry apache2-utils systemd
BENCH_PACKAGES := $(APT_PACKAGES) hyperfine
COMPAT_PACKAGES := $(APT_PACKAGES) libpython3.11-testsuite fio openssl postgresql

.PHONY: deps deps-build deps-demo deps-bench deps-compat build kernel demo test test-smp size bench compat

# Lab test binaries rerun with 2 vCPUs by `make test` (issue #25: "every existing test
# passes at N=2 where it boots Linux"): those whose devices, stdio and exit paths every
# vCPU reaches. smp_e2e runs at 2 vCPUs in the workspace run anyway. ~3 min at N=2 on
# this 2-core host (each binary boots its own 2-CPU L1). `make test-smp` reruns all of them.
# net_e2e is not in the list yet. Its host-loopback hang at N=2 was a passt bug that a
# 2-CPU L1 exposes (worked around in net_e2e.rs `get`); what is left is a rare guest
# triple fault under the 32-client load of the publish case at N=2 (2 of 49 runs, 0 of 24
# with --smolvm-log=kernel or a diagnostic stub: undiagnosed). Once found, add it here.
SMP_TESTS := virtio_e2e security_signals p9_e2e disk_e2e
LAB_TESTS := $(SMP_TESTS) net_e2e rootfs_e2e security_faults services_e2e signing_e2e \
	field_e2e compat_e2e p9_linux_client

# Installs those of the packages $(1) a fresh machine lacks (needs root or sudo).
define install_missing
	@missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q \
			--no-install-recommends $$missing; \
	fi
endef

deps:
	$(call install_missing,$(APT_PACKAGES))
deps-build:
	$(call install_missing,$(BUILD_PACKAGES))
deps-demo:
	$(call install_missing,$(DEMO_PACKAGES))
deps-bench:
	$(call install_missing,$(BENCH_PACKAGES))
deps-compat:
	$(call install_missing,$(COMPAT_PACKAGES))

# Host tools and the two no_std binaries that go into every image.
build: deps-build
	$(CARGO) build --release -p builder
	# One invocation each: cargo unifies features within an invocation, and the
	# builder's linker/std would drag std into the no_std binaries (duplicate panic_impl).
	$(CARGO) build --release -p vmm-stub
	# The stub that checks image signatures under a host trust policy
	# (feature `trust`, +7.0 KB, hashes by the host kernel's AF_ALG:
	# docs/DEPLOY.md); its own target dir.
	$(CARGO) build --release -p vmm-stub --features trust --target-dir target/trust
	# Warm images (docs/WARM.md, not in the default stub yet): a stub that
	# restores a snapshot, and the one that saves it (what `smolvm warm` runs).
	$(CARGO) build --release -p vmm-stub --features warm --target-dir target/warm
	$(CARGO) build --release -p vmm-stub --features warm-save --target-dir target/warm-save
	$(CARGO) build --release -p smol-init

# The guest kernel, cached under $${SMOLVM_CACHE:-~/.cache/smolvm} (~4 min the first time).
kernel: build
	$(SMOLVM) kernel build

demo: deps-demo kernel
	./demo/run.sh

# Unit tests, bare-metal guests under /dev/kvm, Linux guests under QEMU TCG,
# whole images through the KVM lab (or directly on hardware KVM), then the
# size budgets on the reference images.
test: deps kernel
	$(CARGO) test --workspace --release
	SMOLVM_TEST_CPUS=2 $(CARGO) test --release -p smolvm-tests $(SMP_TESTS:%=--test %)
	$(CARGO) test --release -p vmm-stub --features trust --target-dir target/trust --lib trust
	$(CARGO) test --release -p vmm-stub --features warm-save --target-dir target/warm-save --lib -- warm sys::kvm seccomp
	./size-report/reference-images.sh

# Every lab test binary again with 2 vCPUs: L1 boots with 2 CPUs and every image runs
# with SMOLVM_CPUS=2 (tests/lab/README.md).
test-smp: deps kernel
	SMOLVM_TEST_CPUS=2 $(CARGO) test --release -p smolvm-tests $(LAB_TESTS:%=--test %)

# The whole compatibility suite (docs/COMPAT.md): python3's regression tests
# beside the host's, fio, openssl, PostgreSQL, ... in the KVM lab (long: ~1 h
# on this 2-core host). `make test` runs its fast part.
compat: deps-compat kernel
	$(CARGO) test --release -p smolvm-tests --test compat_e2e -- --include-ignored --nocapture

size: build
	./size-report/reference-images.sh

# Benchmarks side by side with QEMU, the KVM floor and Debian's kernel, one run
# (~14 min on this loaded 2-core host, ~10 of them in the KVM lab: I/O and boot
# beside QEMU's devices): writes docs/bench/results.json, README.md and SVG charts.
bench: deps-bench kernel
	./bench/run
