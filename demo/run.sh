#!/bin/bash
# Builds demo/hello.vm from demo/hello.c and runs it: directly where /dev/kvm is
# hardware KVM, through the KVM lab (tests/lab/run) where it is not.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/demo
mkdir -p "$out/rootfs/bin"
gcc -Os -static -nostdlib -fno-asynchronous-unwind-tables -fno-stack-protector -s -Wl,-n -Wl,--build-id=none \
    -o "$out/rootfs/bin/hello" demo/hello.c
target/release/smolvm build --rootfs "$out/rootfs" --entry /bin/hello -o "$out/hello.vm"
ls -l "$out/hello.vm"
if grep -qwE 'vmx|svm' /proc/cpuinfo && [ "${SMOLVM_LAB:-}" != always ]; then
    "$out/hello.vm"
else
    echo "this host's /dev/kvm cannot boot Linux: running hello.vm in the KVM lab (tests/lab/run)"
    tests/lab/run "$out/hello.vm"
fi
