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
# vfs stores every layer whole, and each new package-lock.json or source tree adds cached layers: past a size,
# drop the untagged ones (the cache; the stand-in base and tagged images stay).
max_mb=${GEMINIO_CI_STORE_MAX_MB:-8000}
if [ "$(du -sm "$cache/containers/storage" 2>/dev/null | cut -f1)" -gt "$max_mb" ] 2>/dev/null; then
  echo "build-image: the store is over $max_mb MB; pruning untagged images" >&2
  "${BUILDAH[@]}" rmi --prune >/dev/null || true
fi
# --layers: a rerun with the same package-lock.json reuses the npm ci layer; --force-rm: a failed step leaves no
# working container behind; --format docker keeps HEALTHCHECK.
"${BUILDAH[@]}" bud --quiet --layers --force-rm --format docker --pull=never --isolation chroot \
  --build-arg "BASE_IMAGE=$base" -t "$tag" -f Dockerfile . >&2
echo "$tag"
