#!/usr/bin/env bash
# Runs on the controller (mlops.platform._common, tasks/python_env.yml): makes the
# tar file of wheels a host installs a Python environment from without a package index.
#   make-wheelhouse.sh TAR PYTHON PYVER ARCH GIVEN_DIR PACKAGE...
# GIVEN_DIR non-empty: the wheels are taken from there instead of being downloaded.
# Works in a scratch directory and renames at the end, so an interrupted run never
# leaves a half wheelhouse that later runs would trust.
set -euo pipefail
tar_file="$1" python="$2" pyver="$3" arch="$4" given_dir="$5"
shift 5
mkdir -p "$(dirname "$tar_file")"
scratch="$(mktemp -d "$tar_file.XXXXXX")"
trap 'rm -rf "$scratch" "$scratch.tar"' EXIT
if [ -n "$given_dir" ]; then
  cp -a "$given_dir/." "$scratch/"
else
  # pip matches platform tags exactly: list every manylinux level up to a recent glibc.
  platforms=()
  for minor in $(seq 5 40); do platforms+=(--platform "manylinux_2_${minor}_${arch}"); done
  platforms+=(--platform "manylinux2014_${arch}" --platform "manylinux2010_${arch}"
              --platform "manylinux1_${arch}" --platform "linux_${arch}")
  "$python" -m pip download --quiet --disable-pip-version-check --dest "$scratch" \
    --only-binary=:all: --implementation cp --python-version "$pyver" "${platforms[@]}" "$@"
fi
tar -C "$scratch" -cf "$scratch.tar" .
mv "$scratch.tar" "$tar_file"
echo "made $tar_file with $(find "$scratch" -name '*.whl' | wc -l) wheels"
