#!/bin/sh
# Builds one bare-metal test guest: build.sh OUT MODE [CFLAGS...]
# e.g. build.sh /tmp/exit42 MODE_EXIT -DSTATUS=42 (GUEST_SRC=virtio.c for
# the virtio device guests). Needs only gcc (no extra
# Rust targets): a freestanding static ELF linked at 2 MiB, shaped like a
# vmlinux (PT_LOAD segments at their physical addresses, entry = ELF entry).
set -eu
out=$1 mode=$2
shift 2
exec gcc -x c -std=c11 -O2 -ffreestanding -fno-pic -fno-stack-protector -mno-red-zone \
    -mgeneral-regs-only -fno-asynchronous-unwind-tables -nostdlib -static -no-pie \
    -Wl,-Ttext-segment=0x200000 -Wl,--build-id=none -Wl,-z,norelro -Wl,-e,_start \
    -DMODE="$mode" "$@" -o "$out" "$(dirname "$0")/${GUEST_SRC:-guest.c}"
