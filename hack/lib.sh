# Shared helpers for the hack/ scripts. Sourced, not run.
# shellcheck shell=bash

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export repo_root
# shellcheck source=hack/versions.env
. "$repo_root/hack/versions.env"

venv="$repo_root/.venv"
# The same place as the lookup mlops.platform.controller_cache.
# shellcheck disable=SC2034 # used by the scripts that source this file
cache_dir=${MLOPS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mlops-platform}

log() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

need_root() {
  [ "$(id -u)" -eq 0 ] || die "$1 needs root (podman system containers, apt); run it as root or with sudo"
}

# Put the virtual environment's tools first and make the collection resolvable as
# mlops.platform from this checkout (ansible.cfg points collections_path at .build).
activate() {
  [ -x "$venv/bin/ansible-playbook" ] || die "no virtual environment at $venv: run 'make deps' first"
  export PATH="$venv/bin:$PATH"
  # The cached MinIO build (hack/build-minio.sh) the tests install and run.
  export MLOPS_MINIO_BINARY="$cache_dir/minio/$MINIO_MODULE_VERSION/minio"
  export ANSIBLE_CONFIG="$repo_root/ansible.cfg"
}
