#!/usr/bin/env bash
# Builds the repository's Dockerfile with buildah (vfs store, chroot isolation: no daemon, no registry) over the
# stand-in base image for the Node major the Dockerfile names, and prints the image name.
#   test/deploy/build-image.sh [TAG]
set -euo pipefail
cd "$(dirname "$0")/../.."
tag=${1:-localhost/geminio-sidecar:ci}
# shellcheck source=test/deploy/buildah-env.sh
source test/deploy/buildah-env.sh
default_base=$(sed -nE 's/^ARG BASE_IMAGE=(.*)$/\1/p' Dockerfile)
major=$(sed -nE 's/^node:([0-9]+)(-.*)?$/\1/p' <<<"$default_base")
[ -n "$major" ] || { echo "build-image: cannot read the Node major from 'ARG BASE_IMAGE=$default_base'" >&2; exit 2; }
base=$(test/deploy/stand-in-base.sh "$major")
# --layers: a rerun with the same package-lock.json reuses the npm ci layer. --format docker keeps HEALTHCHECK.
"${BUILDAH[@]}" bud --quiet --layers --format docker --pull=never --isolation chroot \
  --build-arg "BASE_IMAGE=$base" -t "$tag" -f Dockerfile . >&2
echo "$tag"
