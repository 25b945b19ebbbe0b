#!/usr/bin/env bash
# Runs a built image's entrypoint the way a locked-down pod would: as the image's USER (refused when it is not
# numeric or is 0), on a read-only root file system, with CONFIG_DIR mounted read-only at /etc/geminio-sidecar (like
# the ConfigMap volume), the image's environment plus GEMINIO_SIDECAR_* variables from ours, and the host network.
#   test/deploy/run-image.sh IMAGE CONFIG_DIR
# buildah mounts the image's root file system; a private mount namespace binds it read-only with /proc and /dev,
# and chroot drops to the uid (the working directory is /: the entrypoint names absolute paths). Every step is exec'd, so this script's pid becomes the sidecar's: signal it to stop.
set -euo pipefail
image=${1:?usage: run-image.sh IMAGE CONFIG_DIR}
config_dir=${2:?usage: run-image.sh IMAGE CONFIG_DIR}
# shellcheck source=test/deploy/buildah-env.sh
source "$(dirname "$0")/buildah-env.sh"
user=$("${BUILDAH[@]}" inspect --type image --format '{{.OCIv1.Config.User}}' "$image")
[[ "$user" =~ ^[0-9]+(:[0-9]+)?$ ]] || { echo "run-image: USER '$user' is not numeric" >&2; exit 2; }
uid=${user%%:*}
gid=${user#*:}
[ "$gid" != "$user" ] || gid=$uid
[ "$uid" != 0 ] || { echo "run-image: USER is root" >&2; exit 2; }
mapfile -t cmd < <("${BUILDAH[@]}" inspect --type image --format '{{range .OCIv1.Config.Entrypoint}}{{println .}}{{end}}{{range .OCIv1.Config.Cmd}}{{println .}}{{end}}' "$image" | sed '/^$/d')
mapfile -t envs < <("${BUILDAH[@]}" inspect --type image --format '{{range .OCIv1.Config.Env}}{{println .}}{{end}}' "$image" | sed '/^$/d')
while IFS= read -r kv; do envs+=("$kv"); done < <(env | grep -E '^GEMINIO_SIDECAR' || true)

# A working container holds the image's root file system (a vfs directory) for as long as this runs; the name lets
# the caller remove it afterwards (buildah rm).
name=${GEMINIO_RUN_CONTAINER:-geminio-run-$$}
"${BUILDAH[@]}" from --pull=never --name "$name" "$image" >/dev/null
root=$("${BUILDAH[@]}" mount "$name")
echo "run-image: container $name, root $root, uid $uid:$gid" >&2

exec unshare --mount --propagation private -- /bin/sh -ec '
  root=$1; config_dir=$2; uid=$3; gid=$4; shift 4
  mount --bind "$root" "$root"
  mount --bind -o ro "$config_dir" "$root/etc/geminio-sidecar"
  mount -o remount,bind,ro "$root"
  mount -t proc proc "$root/proc"
  mount --rbind /dev "$root/dev"
  exec chroot --userspec="$uid:$gid" "$root" "$@"
' run-image "$root" "$config_dir" "$uid" "$gid" /usr/bin/env -i "${envs[@]}" "${cmd[@]}"
