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
# One line per stage run, "name exit-status seconds" (stages may run in lanes, in subshells).
results=$(mktemp)
trap 'rm -f "$results"' EXIT
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
# Scenario seconds, create to destroy, as measured beside another scenario (CI's two
# lanes; less the steps their steps-covered files skip): only for splitting the
# scenarios between lanes.
declare -A molecule_seconds=([runner]=4200 [multi_host]=2700 [upgrade]=1750 [minio_single]=290
  [minio_distributed]=370 [postgresql]=950)

run_scenario() { # scenario: on its Debian versions, output lines prefixed with its name
  local s=$1 versions="12 13"
  # Every scenario runs on Debian 12 and 13 unless its debian-versions file says
  # otherwise. To keep the suite within its time, each runs on one of the two and every
  # role still runs on both: on 13 runner (the whole platform on one host plus two
  # runners) and minio_single; on 12 multi_host (a runner host among its seven), upgrade
  # (single-node MinIO with TLS), minio_distributed and postgresql (its role converges
  # on 13 in runner).
  [ ! -f "$repo_root/molecule/$s/debian-versions" ] || versions=$(cat "$repo_root/molecule/$s/debian-versions")
  # shellcheck disable=SC2086 # the version list is meant to split
  bash "$hack/molecule.sh" "$s" ${MOLECULE_DEBIAN_VERSIONS:-$versions} 2>&1 | sed -u "s/^/[$s] /"
}

stage_molecule() {
  local scenarios=() s
  for s in "$repo_root"/molecule/*/molecule.yml; do
    [ -f "$s" ] && scenarios+=("$(basename "$(dirname "$s")")")
  done
  [ "${#scenarios[@]}" -gt 0 ] || { echo "no molecule scenarios found" >&2; return 1; }
  [ -z "${MOLECULE_SCENARIOS:-}" ] || read -r -a scenarios <<<"$MOLECULE_SCENARIOS"
  # Scenarios run in MOLECULE_LANES parallel lanes (default 2), one after another in
  # each: every scenario has its own hosts and network, and one scenario keeps about
  # one core busy, so two lanes on the 2-core CI machine take about half the time.
  # Each lane stops at its first failure; the stage fails when any lane did.
  local lanes=${MOLECULE_LANES:-2} i best
  [ "$lanes" -ge 1 ] || die "MOLECULE_LANES must be 1 or more, not $lanes"
  local -a lane_work lane_list sorted=() seconds=()
  for ((i = 0; i < lanes; i++)); do lane_work[i]=0; lane_list[i]=""; done
  while read -r t s; do sorted+=("$s"); seconds+=("$t"); done \
    < <(for s in "${scenarios[@]}"; do echo "${molecule_seconds[$s]:-600} $s"; done | sort -rn)
  local n=${#sorted[@]}
  if [ "$lanes" -eq 2 ] && [ "$n" -le 16 ]; then
    # Two lanes: of every split, the one whose longer lane is shortest (2^n splits, a
    # few hundred here); the longest scenario always goes to lane 1.
    local mask j a b longer best_mask=0 best_longer=-1
    for ((mask = 0; mask < (1 << n); mask += 2)); do
      a=0 b=0
      for ((j = 0; j < n; j++)); do
        if (((mask >> j) & 1)); then b=$((b + seconds[j])); else a=$((a + seconds[j])); fi
      done
      longer=$((a > b ? a : b))
      if [ "$best_longer" -lt 0 ] || [ "$longer" -lt "$best_longer" ]; then best_longer=$longer best_mask=$mask; fi
    done
    for ((j = 0; j < n; j++)); do
      i=$(((best_mask >> j) & 1))
      lane_list[i]+="${lane_list[i]:+ }${sorted[j]}"
    done
  else
    # Otherwise longest first, each to the lane with the least work so far.
    for ((j = 0; j < n; j++)); do
      best=0
      for ((i = 1; i < lanes; i++)); do [ "${lane_work[i]}" -lt "${lane_work[best]}" ] && best=$i; done
      lane_work[best]=$((lane_work[best] + seconds[j]))
      lane_list[best]+="${lane_list[best]:+ }${sorted[j]}"
    done
  fi
  local -a pids=()
  for ((i = 0; i < lanes; i++)); do
    [ -n "${lane_list[i]}" ] || continue
    echo "molecule lane $((i + 1)): ${lane_list[i]}"
    (
      set -o pipefail
      for s in ${lane_list[i]}; do run_scenario "$s" || exit 1; done
    ) &
    pids+=($!)
  done
  local failed_lanes=0 pid
  for pid in "${pids[@]}"; do wait "$pid" || failed_lanes=$((failed_lanes + 1)); done
  [ "$failed_lanes" -eq 0 ]
}

is_setup() { case "$1" in deps|images|minio) return 0;; *) return 1;; esac; }

# Check stages that only read files and time nothing: beside molecule they run at a
# lower CPU priority (nice 10), so the scenarios' hosts keep the CPU they ask for.
low_priority_stages=" yamllint ansible-lint sanity units "

run_stage() {
  local name=$1 start end rc
  declare -F "stage_$name" >/dev/null || die "unknown stage $name (stages: ${all_stages[*]})"
  printf '\n######## stage %s ########\n' "$name"
  start=$(date +%s)
  (
    if [ "${with_molecule:-false}" = true ] && [[ $low_priority_stages == *" $name "* ]]; then
      renice -n 10 -p "$BASHPID" >/dev/null
    fi
    "stage_$name"
  )
  rc=$?
  end=$(date +%s)
  echo "$name $rc $((end - start))" >>"$results"
  printf '######## stage %s: %s in %ss ########\n' "$name" "$([ "$rc" -eq 0 ] && echo passed || echo FAILED)" "$((end - start))"
  return "$rc"
}

# The check stages take one process each, so they run in two lanes on the 2-core CI
# machine, longest first, each stage's lines prefixed with its name.
declare -A stage_seconds=([integration]=190 [sanity]=85 [jobs]=73 [ansible-lint]=61 [units]=19 [yamllint]=2)
run_check_stages() { # stage...
  local -a lane=("" "") sorted=() pids=()
  local work=(0 0) s i pid
  read -r -a sorted < <(for s in "$@"; do echo "${stage_seconds[$s]:-60} $s"; done | sort -rn | cut -d' ' -f2 | xargs)
  for s in "${sorted[@]}"; do
    i=$((work[1] < work[0] ? 1 : 0))
    work[i]=$((work[i] + ${stage_seconds[$s]:-60}))
    lane[i]+="${lane[i]:+ }$s"
  done
  for i in 0 1; do
    [ -n "${lane[i]}" ] || continue
    (for s in ${lane[i]}; do run_stage "$s" 2>&1 | sed -u "s/^/[$s] /"; done) &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid"; done
}

summary() {
  local name rc seconds word
  printf '\n######## summary ########\n'
  while read -r name rc seconds; do
    if [ "$rc" -eq 0 ]; then passed=$((passed + 1)) word=passed; else failed=$((failed + 1)) word=FAILED; fi
    printf '%-13s %s  %5ss\n' "$name" "$word" "$seconds"
  done <"$results"
  # A stage whose lane died before it ended has no line: that is a failure too.
  for name in "${stages[@]}"; do
    grep -q "^$name " "$results" || { failed=$((failed + 1)); printf '%-13s no result\n' "$name"; }
  done
  printf 'stages: %d passed, %d failed\n' "$passed" "$failed"
}

for s in "${stages[@]}"; do
  declare -F "stage_$s" >/dev/null || die "unknown stage $s (stages: ${all_stages[*]})"
done

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

checks=()
with_molecule=false
for s in "${stages[@]}"; do
  if [ "$s" = molecule ]; then with_molecule=true; elif ! is_setup "$s"; then checks+=("$s"); fi
done
# With molecule, the check stages run beside it rather than before it: they end within
# the scenarios' first minutes (creating and converging hosts, where nothing is timed),
# and CI saves their time. Their results are summed up with molecule's at the end.
if [ "${#checks[@]}" -gt 0 ] && $with_molecule; then
  run_check_stages "${checks[@]}" &
  checks_pid=$!
  run_stage molecule
  wait "$checks_pid"
elif [ "${#checks[@]}" -gt 0 ]; then
  run_check_stages "${checks[@]}"
elif $with_molecule; then
  run_stage molecule
fi

summary
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
