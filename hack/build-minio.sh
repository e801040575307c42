#!/usr/bin/env bash
# Build the MinIO server (minio) and client (mc) from their Go modules at the pinned
# module versions and cache the binaries by version under
#   ${MLOPS_CACHE_DIR:-~/.cache/mlops-platform}/<name>/<module version>/<name>
# The community edition ships source only, so this is how the tests and the demo get a
# real MinIO. Safe to run again: a cached binary that reports its pinned build is reused.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"

# A module pseudo-version v0.0.0-YYYYMMDDhhmmss-<commit12> carries the commit time and
# commit; MinIO's own builds print "<release tag> (commit-id=...)" from ldflags, and a
# build that is not a published release is tagged DEVELOPMENT.<time> by MinIO itself.
stamp_for() {
  local v=$1 ts commit
  ts=$(printf '%s' "$v" | cut -d- -f2)
  commit=$(printf '%s' "$v" | cut -d- -f3)
  [[ ${#ts} -eq 14 && ${#commit} -eq 12 ]] || die "$v is not a module pseudo-version"
  local d="${ts:0:4}-${ts:4:2}-${ts:6:2}" t="${ts:8:2}:${ts:10:2}:${ts:12:2}"
  printf '%s %s %s' "${d}T${t}Z" "DEVELOPMENT.${d}T${t//:/-}Z" "$commit"
}

build() { # name module version
  local name=$1 module=$2 version=$3
  local dest="$cache_dir/$name/$version"
  local time tag commit
  read -r time tag commit <<<"$(stamp_for "$version")"
  if [ -x "$dest/$name" ] && "$dest/$name" --version 2>/dev/null | grep -q "$tag (commit-id=$commit)"; then
    log "$name $version: cached ($dest/$name): $("$dest/$name" --version | sed -n 1p)"
    return
  fi
  command -v go >/dev/null || die "go (>= 1.24) is required to build $name"
  log "$name $version: building $module (several minutes, once per machine)"
  local gobin
  gobin=$(mktemp -d)
  GOBIN="$gobin" CGO_ENABLED=0 GOFLAGS=-trimpath go install \
    -ldflags "-s -w -X $module/cmd.Version=$time -X $module/cmd.ReleaseTag=$tag -X $module/cmd.CommitID=$commit -X $module/cmd.ShortCommitID=$commit" \
    "$module@$version"
  mkdir -p "$dest"
  install -m 0755 "$gobin/$name" "$dest/$name"
  rm -rf "$gobin"
  "$dest/$name" --version | grep -q "$tag (commit-id=$commit)" || die "$name build does not report $tag"
  log "$name $version: built ($dest/$name): $("$dest/$name" --version | sed -n 1p)"
}

build minio github.com/minio/minio "$MINIO_MODULE_VERSION"
build mc github.com/minio/mc "$MC_MODULE_VERSION"
