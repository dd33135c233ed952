#!/bin/bash
# Builds a real multi-layer `docker save` archive (classic layout) from
# Debian packages, the way an image built by a Dockerfile is layered:
#   layer 1  base:    base-files libc6 libgcc-s1 dash
#   layer 2  tools:   busybox (Debian's dynamically linked build)
#   layer 3  python:  python3-minimal python3.11-minimal libpython3.11-minimal
#                     libexpat1 zlib1g libssl3
#   layer 4  slim:    whiteouts deleting /usr/share/{doc,man,lintian}
# Config: Cmd runs python3 (prints its version and the os-release name),
# Env PATH + LANG, WorkingDir /root.
#
#   tests/rootfs/debian-image.sh OUT.tar [WORKDIR]
#
# Packages come from the host's apt sources (`apt-get download`, cached in
# WORKDIR/debs, default ${SMOLVM_CACHE:-~/.cache/smolvm}/debian-image).
# Then, e.g.:
#   smolvm build --from-docker-archive OUT.tar -o debian.vm && ./debian.vm
set -euo pipefail
out=$(realpath -m "${1:?usage: $0 OUT.tar [WORKDIR]}")
work=${2:-${SMOLVM_CACHE:-$HOME/.cache/smolvm}/debian-image}
layers=(
	"base-files libc6 libgcc-s1 dash"
	"busybox"
	"python3-minimal python3.11-minimal libpython3.11-minimal libexpat1 zlib1g libssl3"
)
mkdir -p "$work/debs"
stage=$(mktemp -d "$work/stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT

# Reproducible layer tars: sorted, owned by root, fixed times.
pack() { tar -C "$1" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$2" .; }

manifest_layers=()
n=0
for set in "${layers[@]}" slim; do
	n=$((n + 1))
	root=$stage/root$n
	mkdir -p "$root"
	if [ "$set" = slim ]; then
		mkdir -p "$root/usr/share"
		for d in doc man lintian; do : >"$root/usr/share/.wh.$d"; done
	else
		for pkg in $set; do
			deb=$(ls "$work/debs/${pkg}_"*.deb 2>/dev/null | head -n1 || true)
			if [ -z "$deb" ]; then
				(cd "$work/debs" && apt-get download -q "$pkg" >&2)
				deb=$(ls "$work/debs/${pkg}_"*.deb | head -n1)
			fi
			dpkg-deb -x "$deb" "$root"
		done
	fi
	mkdir -p "$stage/layer$n"
	pack "$root" "$stage/layer$n/layer.tar"
	manifest_layers+=("\"layer$n/layer.tar\"")
done

cat >"$stage/config.json" <<'EOF'
{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","LANG=C.UTF-8"],"Cmd":["/usr/bin/python3","-c","import sys; print('python', sys.version.split()[0], 'on', open('/etc/os-release').readline().strip())"],"WorkingDir":"/root"},"rootfs":{"type":"layers"}}
EOF
(IFS=,; printf '[{"Config":"config.json","RepoTags":["smolvm/debian-python:1"],"Layers":[%s]}]\n' "${manifest_layers[*]}") >"$stage/manifest.json"
# The WorkingDir comes with the last layer, as a Dockerfile's WORKDIR would.
mkdir -p "$stage/root$n/root"
pack "$stage/root$n" "$stage/layer$n/layer.tar"
(cd "$stage" && tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$out" \
	manifest.json config.json layer*)
echo "$out: $n layers"
