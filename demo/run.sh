#!/bin/bash
# Builds demo/hello.vm from demo/hello.c and runs it, then builds
# http-echo.vm (examples/http-echo, port 8080 published by default) and shows
# one request answered: directly where /dev/kvm is hardware KVM, through the
# KVM lab (tests/lab/run) where it is not.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/demo
mkdir -p "$out/rootfs/bin"
gcc -Os -static -nostdlib -fno-asynchronous-unwind-tables -fno-stack-protector -s -Wl,-n -Wl,--build-id=none \
    -o "$out/rootfs/bin/hello" demo/hello.c
target/release/smolvm build --rootfs "$out/rootfs" --entry /bin/hello -o "$out/hello.vm"
ls -l "$out/hello.vm"
mkdir -p "$out/http-echo/bin"
musl-gcc -Os -static -pthread -s -o "$out/http-echo/bin/http-echo" examples/http-echo/http-echo.c
target/release/smolvm build --rootfs "$out/http-echo" --entry /bin/http-echo --publish 8080:8080 -o "$out/http-echo.vm"
ls -l "$out/http-echo.vm"
if grep -qwE 'vmx|svm' /proc/cpuinfo && [ "${SMOLVM_LAB:-}" != always ]; then
    "$out/hello.vm"
    demo/http-echo.sh "$out/http-echo.vm"
else
    echo "this host's /dev/kvm cannot boot Linux: running the demos in the KVM lab (tests/lab/run)"
    tests/lab/run "$out/hello.vm"
    tests/lab/run -t 120 -- "$PWD/demo/http-echo.sh" "$PWD/$out/http-echo.vm"
fi
