#!/usr/bin/env bash
# The whole suite behind `make test`, stage by stage, with each stage's duration.
#   hack/test.sh                 every stage
#   hack/test.sh units sanity    only those stages (setup stages run when needed)
# Setup stages stop the run when they fail; check stages all run and are summed up
# at the end. A check stage that runs no test fails.
set -uo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"

all_stages=(deps images minio yamllint ansible-lint sanity units jobs integration molecule)
if [ "$#" -gt 0 ]; then stages=("$@"); else stages=("${all_stages[@]}"); fi

hack="$repo_root/hack"
declare -a report=()
passed=0
failed=0

stage_deps() { bash "$hack/bootstrap.sh"; }
# shellcheck disable=SC2086 # the version list is meant to split
stage_images() { bash "$hack/build-images.sh" ${MOLECULE_DEBIAN_VERSIONS:-12 13}; }
stage_minio() { bash "$hack/build-minio.sh"; }
stage_yamllint() { activate && cd "$repo_root" && yamllint --strict . && echo "yamllint: clean"; }
stage_ansible-lint() { activate && cd "$repo_root" && ansible-lint; }
stage_sanity() { bash "$hack/sanity.sh"; }
stage_units() {
  activate && cd "$repo_root" || return 1
  # pytest exits 5 when it collects nothing: that is a failure here too.
  python -m pytest -q tests/unit
}
stage_jobs() {
  # The job queue package against a throwaway PostgreSQL the tests start on a Unix socket.
  activate && cd "$repo_root" && PYTHONPATH="$repo_root/jobs/src" python -m pytest -q jobs/tests
}
stage_integration() {
  # The object storage modules against a real MinIO the tests start on loopback.
  activate && cd "$repo_root" && python -m pytest -q tests/integration
}
stage_molecule() {
  local scenarios=() s
  for s in "$repo_root"/molecule/*/molecule.yml; do
    [ -f "$s" ] && scenarios+=("$(basename "$(dirname "$s")")")
  done
  [ "${#scenarios[@]}" -gt 0 ] || { echo "no molecule scenarios found" >&2; return 1; }
  [ -z "${MOLECULE_SCENARIOS:-}" ] || read -r -a scenarios <<<"$MOLECULE_SCENARIOS"
  local versions
  for s in "${scenarios[@]}"; do
    # Every scenario runs on Debian 12 and 13 unless its debian-versions file says
    # otherwise. To keep the suite within its time, the platform scenarios split the two:
    # all_in_one on 13; runner (the same platform plus runners, its own tests) and
    # upgrade on 12; the MinIO role scenarios one each, minio_single on 13 and
    # minio_distributed on 12 (all_in_one and runner cover single-node MinIO on both).
    versions="12 13"
    [ ! -f "$repo_root/molecule/$s/debian-versions" ] || versions=$(cat "$repo_root/molecule/$s/debian-versions")
    # shellcheck disable=SC2086 # the version list is meant to split
    bash "$hack/molecule.sh" "$s" ${MOLECULE_DEBIAN_VERSIONS:-$versions} || return 1
  done
}

is_setup() { case "$1" in deps|images|minio) return 0;; *) return 1;; esac; }

run_stage() {
  local name=$1 start end rc
  declare -F "stage_$name" >/dev/null || die "unknown stage $name (stages: ${all_stages[*]})"
  printf '\n######## stage %s ########\n' "$name"
  start=$(date +%s)
  ( "stage_$name" )
  rc=$?
  end=$(date +%s)
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1)); report+=("$(printf '%-13s passed  %5ss' "$name" "$((end - start))")")
  else
    failed=$((failed + 1)); report+=("$(printf '%-13s FAILED  %5ss' "$name" "$((end - start))")")
  fi
  printf '######## stage %s: %s in %ss ########\n' "$name" "$([ "$rc" -eq 0 ] && echo passed || echo FAILED)" "$((end - start))"
  return "$rc"
}

summary() {
  printf '\n######## summary ########\n'
  printf '%s\n' "${report[@]}"
  printf 'stages: %d passed, %d failed\n' "$passed" "$failed"
}

# Setup first, always, so a single check stage can be run on a fresh machine.
for s in deps images minio; do
  wanted=false
  for x in "${stages[@]}"; do [ "$x" = "$s" ] && wanted=true; done
  case "$s" in
    # jobs: the podman executor's tests run a Debian 12 test image.
    images) for x in "${stages[@]}"; do case "$x" in jobs|molecule) wanted=true ;; esac; done ;;
    minio) for x in "${stages[@]}"; do case "$x" in integration|molecule) wanted=true ;; esac; done ;;
    deps) wanted=true ;;
  esac
  if $wanted; then
    run_stage "$s" || { summary; exit 1; }
  fi
done

for s in "${stages[@]}"; do
  is_setup "$s" && continue
  run_stage "$s"
done

summary
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
