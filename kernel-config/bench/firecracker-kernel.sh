#!/bin/sh
# Builds Firecracker's recommended 6.1 x86_64 guest kernel (firecracker-6.1.config, next
# to this script) from the same Debian kernel source the project builds from, for the
# side-by-side boot comparison in ../BOOT-PROFILE.md. Never used by the product.
#
#   firecracker-kernel.sh [SOURCE] OUT_DIR
#
# SOURCE: Debian's tarball (default /usr/src/linux-source-6.1.tar.xz, extracted once
# into OUT_DIR/src) or an unpacked, unconfigured tree (e.g. the project's extraction in
# ~/.cache/smolvm/kernel/src/<hash>; built out of tree, never written to).
# Result: OUT_DIR/vmlinux and OUT_DIR/bzImage (OUT_DIR/build holds the objects).
# Idempotent: a finished build whose config is unchanged is not touched again.
# Niced, -j2 (JOBS=N to change): the host is shared.
# EXTRA_CONFIG=FILE appends a fragment (CONFIG_ lines) before olddefconfig, e.g.
# firecracker-cmdline-devices.config so that the kernel finds virtio-mmio devices under
# QEMU. In the same OUT_DIR only the affected files rebuild (a copied OUT_DIR rebuilds
# everything: objtool's paths are absolute), so copy OUT_DIR/vmlinux aside first.
set -eu

usage() { echo "usage: $0 [linux-source tarball or tree] OUT_DIR" >&2; exit 2; }
case $# in
    1) src=/usr/src/linux-source-6.1.tar.xz; out=$1 ;;
    2) src=$1; out=$2 ;;
    *) usage ;;
esac
config=$(cd "$(dirname "$0")" && pwd)/firecracker-6.1.config
jobs=${JOBS:-2}
[ -f "$config" ] || { echo "missing $config" >&2; exit 1; }
mkdir -p "$out"
out=$(cd "$out" && pwd)

# The source tree.
if [ -d "$src" ]; then
    tree=$(cd "$src" && pwd)
    if [ -e "$tree/.config" ]; then
        echo "$tree was configured in place: run make -C $tree mrproper or pass the tarball" >&2
        exit 1
    fi
elif [ -f "$src" ]; then
    tree=$out/src
    if [ ! -f "$tree/Makefile" ]; then
        echo "extracting $src"
        rm -rf "$out/.extract"
        mkdir -p "$out/.extract"
        tar -xf "$src" -C "$out/.extract"
        top=$(find "$out/.extract" -mindepth 2 -maxdepth 2 -name Makefile -printf '%h\n')
        [ "$(printf '%s\n' "$top" | wc -l)" = 1 ] && [ -n "$top" ] ||
            { echo "$src does not hold exactly one kernel tree" >&2; exit 1; }
        mv "$top" "$tree"
        rm -rf "$out/.extract"
    fi
else
    echo "kernel source $src not found (apt-get install linux-source-6.1)" >&2
    exit 1
fi

build=$out/build
mkdir -p "$build"
stamp=$build/.firecracker-config
want=$build/.firecracker-config.want
cat "$config" ${EXTRA_CONFIG:+"$EXTRA_CONFIG"} > "$want"
if [ -f "$out/vmlinux" ] && [ -f "$out/bzImage" ] && [ -f "$stamp" ] && cmp -s "$want" "$stamp"; then
    echo "up to date: $out/vmlinux $out/bzImage"
    exit 0
fi

# Firecracker's config is a full .config from their 6.1 (Amazon Linux) tree:
# olddefconfig settles the few symbols Debian's 6.1.x adds or drops.
cp "$want" "$build/.config"
make -s -C "$tree" O="$build" olddefconfig
nice -n 10 make -C "$tree" O="$build" -j"$jobs" vmlinux bzImage
cp "$build/vmlinux" "$out/vmlinux.tmp" && mv "$out/vmlinux.tmp" "$out/vmlinux"
cp "$build/arch/x86/boot/bzImage" "$out/bzImage.tmp" && mv "$out/bzImage.tmp" "$out/bzImage"
mv "$want" "$stamp"
ls -l "$out/vmlinux" "$out/bzImage"
