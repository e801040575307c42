#!/usr/bin/env bash
# Run `ansible-test sanity` on the collection, with no ignore files, in virtual
# environments ansible-test makes itself (--venv), on a machine that cannot reach
# ansible-test's pip bootstrap download host.
#   hack/sanity.sh [ANSIBLE_TEST_SANITY_ARGS...]   e.g. hack/sanity.sh --test pylint
# ansible-test needs the collection at .../ansible_collections/mlops/platform, so it
# runs on a copy under .build/sanity of every file git tracks or would track
# (committed and new, not ignored) as the working tree has it now.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"
activate

start=$SECONDS
python_version=3.11
copy="$repo_root/.build/sanity/ansible_collections/mlops/platform"

# ansible-test bootstraps pip into each new virtual environment with a script it
# downloads once and caches as ~/.ansible/test/cache/get_pip_<pip version>.py. The
# download host is out of reach here, so put a stand-in in the cache: it installs
# the interpreter's bundled pip with ensurepip, then has that pip install what
# ansible-test asked for from the package index this machine is configured for.
install_pip_bootstrap() {
  local ansible_test pip_version cached want
  ansible_test=$(python -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')
  pip_version=$(sed -n "s/^ *pip='\([0-9.]*\)',\$/\1/p" "$ansible_test/_internal/python_requirements.py")
  [ -n "$pip_version" ] || die "cannot tell which pip version ansible-test bootstraps (read $ansible_test/_internal/python_requirements.py)"
  cached="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
  want=$(cat <<'PY'
"""Stand-in for ansible-test's pip bootstrap script, written by mlops.platform hack/sanity.sh.

ansible-test runs it in a new virtual environment without pip, with pip install
arguments such as: --disable-pip-version-check pip==24.2 --no-setuptools --no-wheel
"""
import ensurepip
import os
import subprocess
import sys

# Options of the real bootstrap script that `pip install` does not know.
BOOTSTRAP_ONLY = ("--no-setuptools", "--no-wheel")


def main():
    args = sys.argv[1:]
    environment = dict(os.environ)
    # ensurepip empties this process's PIP_* variables and sets PIP_CONFIG_FILE
    # to os.devnull, which would hide this machine's pip configuration (index,
    # CA bundle): pip runs with the environment as it was before, less that.
    ensurepip.bootstrap(upgrade=True)
    environment.pop("PIP_CONFIG_FILE", None)
    pip = [sys.executable, "-m", "pip"]
    install = [arg for arg in args if arg not in BOOTSTRAP_ONLY]
    subprocess.check_call(pip + ["install"] + install, env=environment)
    if "--no-setuptools" in args:
        # Python 3.11's ensurepip also installs setuptools; ansible-test wants none.
        subprocess.check_call(pip + ["uninstall", "--yes", "--quiet", "setuptools"], env=environment)


if __name__ == "__main__":
    main()
PY
)
  if [ -f "$cached" ] && [ "$(cat "$cached")" = "$want" ]; then
    return
  fi
  log "writing pip bootstrap stand-in $cached"
  mkdir -p "$(dirname "$cached")"
  printf '%s\n' "$want" >"$cached"
}

# Refresh the copy from scratch: the files git tracks or would track (committed
# and new, not ignored, so no .venv, .build, .git or tests/output) as the working
# tree has them, which also drops files left from earlier runs. Only the copy's own
# tests/output is kept: ansible-test keeps its --venv environment there.
refresh_copy() {
  local parent output
  parent=$(dirname "$copy")
  output="$parent/.platform-tests-output"
  rm -rf "$output"
  if [ -d "$copy/tests/output" ]; then mv "$copy/tests/output" "$output"; fi
  rm -rf "$copy"
  mkdir -p "$copy"
  (
    cd "$repo_root"
    # Tracked files deleted from the working tree are still listed; skip them.
    git ls-files -z --cached --others --exclude-standard |
      while IFS= read -r -d '' file; do
        if [ -e "$file" ] || [ -L "$file" ]; then printf '%s\0' "$file"; fi
      done |
      tar --null --no-recursion -cf - --files-from=- |
      tar -xf - -C "$copy"
  )
  if [ -d "$output" ]; then
    mkdir -p "$copy/tests"
    mv "$output" "$copy/tests/output"
  fi
  # ansible-test lists a collection's files with git from the nearest .git upwards;
  # without one of its own the copy would be this checkout's ignored .build and
  # have no files at all. An empty repository lists every file the copy has, less
  # what its .gitignore excludes.
  git init -q "$copy"
}

git -C "$repo_root" rev-parse --is-inside-work-tree >/dev/null 2>&1 ||
  die "$repo_root is not a git checkout: the sanity copy is made of the files git lists"
install_pip_bootstrap
log "copying the collection to $copy"
refresh_copy

if compgen -G "$copy/tests/sanity/ignore-*.txt" >/dev/null; then
  die "tests/sanity/ignore-*.txt exist: fix the findings instead of ignoring them"
fi

cd "$copy"
# ansible-test writes its own configuration for what it runs; the checkout's
# ansible.cfg (which activate points at) is for playbooks run from the checkout.
unset ANSIBLE_CONFIG
log "ansible-test sanity --python $python_version --venv $*"
status=0
output=$(mktemp)
ansible-test sanity --python "$python_version" --venv "$@" 2>&1 | tee "$output" || status=$?
# A run that found no files to test exits 0 with "All targets skipped": that is a
# broken copy, not a clean collection.
if grep -q 'All targets skipped' "$output"; then
  echo "ansible-test skipped every target: the copy at $copy holds no files it recognizes" >&2
  status=1
fi
rm -f "$output"
log "ansible-test sanity finished in $((SECONDS - start)) s (exit status $status)"
exit "$status"
