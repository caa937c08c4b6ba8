#!/usr/bin/env bash
# A Python 3.11 base image made locally, for machines that can reach a Debian mirror but no image
# registry: debootstrap writes a minimal Debian bookworm (python3 and its venv module included)
# and `docker import` turns it into an image. The Dockerfile builds FROM it with
#   make images PYTHON_IMAGE=mlic-local/python:3.11-bookworm
# It is the same Debian release and Python minor version as python:3.11-slim-bookworm, the default.
# Needs root (debootstrap) and a running Docker engine.
set -euo pipefail

tag="${1:-mlic-local/python:3.11-bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if [ "$(id -u)" != 0 ]; then
    echo "error: debootstrap needs root; run: sudo $0 $*" >&2
    exit 1
fi
for tool in debootstrap docker; do
    if ! command -v "$tool" >/dev/null; then
        echo "error: $tool not found; fix: apt-get install -y debootstrap docker.io" >&2
        exit 1
    fi
done

rootfs="$(mktemp -d)"
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$mirror"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
tar -C "$rootfs" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    - "$tag"
echo "base image: $tag ($(docker image inspect --format '{{.Id}}' "$tag"))"
