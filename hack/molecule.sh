#!/usr/bin/env bash
# Run one molecule scenario on each Debian version given (default: 12 13):
# create -> converge -> idempotence (zero changed) -> check mode on the converged
# hosts (zero changed) -> verify -> destroy. Hosts are destroyed on the way out,
# also when a step fails. A scenario whose idempotence or check step is asserted on
# the same plays elsewhere skips it: its steps-covered file names the step and where,
# one line each ("idempotence: ..." or "check: ..."), and the log says so.
#   hack/molecule.sh SCENARIO [12] [13]
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"
activate

scenario=${1:?usage: hack/molecule.sh SCENARIO [DEBIAN_VERSION...]}
shift
if [ "$#" -gt 0 ]; then versions=("$@"); else versions=(12 13); fi
[ -d "$repo_root/molecule/$scenario" ] || die "no molecule scenario named $scenario"
cd "$repo_root"

# Each step's duration goes into the last line, so CI logs show where the time goes.
timed() { # step command...
  local step=$1 started=$SECONDS
  shift
  "$@"
  steps+="${steps:+, }$step $((SECONDS - started)) s"
}

covered() { # step: where the scenario's steps-covered file says the step is asserted; fails when it is not listed
  local file="molecule/$scenario/steps-covered" where
  [ -f "$file" ] || return 1
  where=$(sed -n "s/^$1: *//p" "$file")
  [ -n "$where" ] && echo "$where"
}

# The scenario's containers, then its named volumes (mlops-test-<scenario>-*, such as
# multi_host's MinIO drives, which must outlive a restart of their container): none is
# left from an earlier run, none stays after this one.
destroy() {
  molecule destroy -s "$scenario" >/dev/null 2>&1 || true
  podman volume ls -q --filter "name=^mlops-test-$scenario-" | xargs -r podman volume rm -f >/dev/null 2>&1 || true
}

for debian in "${versions[@]}"; do
  steps=""
  export MOLECULE_DEBIAN=$debian MLOPS_IMAGE_PREFIX
  log "molecule $scenario on Debian $debian"
  destroy
  trap destroy EXIT
  if [ -f "molecule/$scenario/network" ]; then
    read -r network subnet < <(grep -v '^#' "molecule/$scenario/network")
    podman network exists "$network" || podman network create --subnet "$subnet" "$network" >/dev/null
  fi
  timed create molecule create -s "$scenario"
  timed converge molecule converge -s "$scenario"
  if where=$(covered idempotence); then
    log "$scenario: idempotence is asserted elsewhere: $where"
  else
    timed idempotence molecule idempotence -s "$scenario"
  fi
  # molecule's check step runs the converge playbook with --check but does not judge
  # the result: a converged host must report zero changed.
  if where=$(covered check); then
    log "$scenario: check mode on the converged hosts is asserted elsewhere: $where"
  else
    out=$(mktemp)
    started=$SECONDS
    molecule check -s "$scenario" 2>&1 | tee "$out"
    steps+=", check $((SECONDS - started)) s"
    if grep -qE 'ok=[0-9]+ +changed=[1-9]' "$out"; then
      rm -f "$out"
      die "$scenario on Debian $debian: check mode on the converged hosts reported changes"
    fi
    grep -q 'ok=' "$out" || { rm -f "$out"; die "$scenario on Debian $debian: check mode printed no recap"; }
    rm -f "$out"
  fi
  timed verify molecule verify -s "$scenario"
  # The podman driver removes the network while a just-removed container can still
  # hold it ("network is being used", seen once with the runner scenario's 3 hosts):
  # a second destroy, after the containers are gone, finishes the job.
  molecule destroy -s "$scenario" || { sleep 10; molecule destroy -s "$scenario"; }
  destroy
  trap - EXIT
  log "molecule $scenario on Debian $debian: passed ($steps)"
done
