#!/usr/bin/env bash
# Install everything the controller side needs on a Debian 12 machine: apt packages,
# podman configured for systemd containers, a virtual environment with the pinned
# Python packages (ansible bundles the collections), and the collection link that
# makes this checkout resolvable as mlops.platform. Safe to run again: each step
# checks before it changes anything.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"

# postgresql-15: server binaries for the job queue's tests (jobs/tests), which start a
# throwaway cluster of their own; no cluster of the package's is wanted (see below).
# iptables: netavark sets up the test networks with it and only recommends it, so a
# machine without recommends fails every container start ("netavark: No such file").
apt_packages=(podman runc debootstrap netavark aardvark-dns iptables shellcheck postgresql-client postgresql-15
  python3-venv git make curl)

install_apt() {
  local missing=()
  for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    log "apt packages present"
    return
  fi
  need_root "installing ${missing[*]}"
  log "installing apt packages: ${missing[*]}"
  # Keep the PostgreSQL package from creating and starting a "main" cluster here.
  mkdir -p /etc/postgresql-common/createcluster.d
  [ -e /etc/postgresql-common/createcluster.d/50-mlops-platform.conf ] ||
    echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/50-mlops-platform.conf
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# crun cannot run containers on cgroup v1 hybrid hosts and podman's default rlimits are
# refused inside some VMs; runc with explicit limits works on both. A drop-in keeps any
# containers.conf the operator already has.
configure_podman() {
  local conf=/etc/containers/containers.conf.d/50-mlops-platform.conf
  local want
  want=$(cat <<'CONF'
# Written by mlops.platform hack/bootstrap.sh for its systemd test containers.
[containers]
default_ulimits = ["nofile=16384:16384", "nproc=4096:4096"]

[engine]
runtime = "runc"
CONF
)
  if [ -f "$conf" ] && [ "$(cat "$conf")" = "$want" ]; then
    log "podman configured"
  else
    need_root "configuring podman"
    mkdir -p "$(dirname "$conf")"
    printf '%s\n' "$want" >"$conf"
    log "podman configured ($conf)"
  fi
  configure_subids
}

# The podman executor's jobs (jobs/tests) each get a user namespace of their own
# (--userns=auto), whose host ids root podman takes from the ranges of the user
# `containers`: the same line the runner role writes. A `containers` line with another
# range is replaced, other users' lines are kept.
configure_subids() {
  local line=containers:2147483647:2147483648 f
  for f in /etc/subuid /etc/subgid; do
    if [ -f "$f" ] && grep -qx "$line" "$f"; then
      continue
    fi
    need_root "giving podman's user namespaces their ids ($f)"
    touch "$f"
    sed -i '/^containers:/d' "$f"
    printf '%s\n' "$line" >>"$f"
    log "podman user namespaces: $line in $f"
  done
}

# The pinned virtual environment lives in the controller's cache, one per requirements
# and Python, and .venv links to it: a new checkout of the same requirements (CI's
# fresh clone) finds it made. A .venv directory of an older checkout is kept and
# updated in place. Made under a lock, at its final path (pip writes that path into
# the scripts it installs), and trusted only once its stamp is written.
install_venv() {
  local want
  want=$( (cat "$repo_root/requirements.txt" "$repo_root/requirements-test.txt"
           python3 -c 'import sys; print(sys.executable, sys.version)') | sha256sum | cut -c1-16)
  if [ -d "$venv" ] && [ ! -L "$venv" ]; then
    fill_venv "$venv" "$want"
    return
  fi
  local shared="$cache_dir/venvs/$want"
  mkdir -p "$cache_dir/venvs"
  (
    flock 9
    fill_venv "$shared" "$want"
  ) 9>"$shared.lock"
  ln -sfn "$shared" "$venv"
}

fill_venv() { # directory, requirements hash: create or update the environment there
  local dir=$1 want=$2 stamp="$1/.requirements.sha256"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    log "virtual environment up to date ($dir)"
    return
  fi
  log "creating virtual environment $dir (pinned packages, a few minutes the first time)"
  rm -f "$stamp"
  [ -x "$dir/bin/python" ] || python3 -m venv "$dir"
  "$dir/bin/python" -m pip install -q --upgrade pip
  "$dir/bin/python" -m pip install -q -r "$repo_root/requirements-test.txt"
  printf '%s\n' "$want" >"$stamp"
}

# ansible finds collections as <path>/ansible_collections/<namespace>/<name>; the
# repository root is the collection, so link it there instead of copying.
link_collection() {
  local dir="$repo_root/.build/collections/ansible_collections/mlops"
  mkdir -p "$dir"
  ln -sfn ../../../.. "$dir/platform"
  [ -f "$dir/platform/galaxy.yml" ] || die "collection link $dir/platform is broken"
}

install_apt
configure_podman
install_venv
link_collection
log "controller ready: $("$venv/bin/ansible" --version | sed -n 1p)"
