# Sourced by the image scripts: one buildah store for every CI run on this machine (a cache, like ~/.npm), with the
# vfs driver (no overlay or fuse needed) and chroot isolation (no runc/crun namespaces needed).
cache=${GEMINIO_CI_CACHE:-/var/cache/geminio-ci}
BUILDAH=(buildah --root "$cache/containers/storage" --runroot "$cache/containers/run" --storage-driver vfs)
export BUILDAH_ISOLATION=chroot
