#!/usr/bin/env bash
# Build both images with podman (`make images`): the trainer (k8s/Dockerfile) and the preprocessing image
# (k8s/Dockerfile.beam), on a local Debian base made once per machine with debootstrap, for machines that
# cannot pull the published bases. Prints each image's size.
#
#   k8s/images.sh [TAG]      # TAG defaults to dev: localhost/cyclegan-trainer:TAG, localhost/cyclegan-beam:TAG
#   k8s/images.sh --check    # exit 2, naming what to install, where this machine lacks a tool the build needs
#
# Podman's settings are k8s/podman/*.conf (fuse-overlayfs storage, cgroupfs, runc), which work inside a container;
# k8s/podman/env names the variables that point podman at them.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=localhost/cyclegan-base:py311
while IFS== read -r name path; do
  [[ -z $name || $name == \#* ]] || export "$name=$PWD/$path"
done < k8s/podman/env

for tool in podman runc fuse-overlayfs debootstrap; do
  if ! command -v "$tool" >/dev/null; then
    echo "images.sh: needs $tool: apt-get install -y podman runc fuse-overlayfs debootstrap" >&2
    exit 2
  fi
done
[ "${1:-}" = --check ] && exit 0
TAG="${1:-dev}"

if ! podman image exists "$BASE"; then
  # The mirror apt already uses: the machine may reach no other.
  mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
  mirror=${mirror:-$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null)}
  rootfs=$(mktemp -d)
  trap 'rm -rf "$rootfs"' EXIT
  echo "images.sh: making $BASE (Debian bookworm, python3) from ${mirror:=http://deb.debian.org/debian} (once)"
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates bookworm "$rootfs" \
    "$mirror" >/dev/null
  rm -f "$rootfs"/usr/lib/python3.*/EXTERNALLY-MANAGED  # the image's one Python is pip's to manage
  tar -C "$rootfs" -c . | podman import --quiet - "$BASE" >/dev/null
fi

for image in trainer beam; do
  dockerfile=k8s/Dockerfile; [ "$image" = beam ] && dockerfile=k8s/Dockerfile.beam
  started=$(date +%s)
  # pip reaches the package index as this machine does: through its CA bundle.
  podman build --isolation chroot --network host --build-arg BASE="$BASE" \
    -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
    -f "$dockerfile" -t "localhost/cyclegan-$image:$TAG" . >/dev/null
  size=$(podman image inspect --format '{{.Size}}' "localhost/cyclegan-$image:$TAG")
  echo "images.sh: localhost/cyclegan-$image:$TAG: $((size / 1000000)) MB, built in $(( $(date +%s) - started )) s"
done
