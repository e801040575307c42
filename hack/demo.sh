#!/usr/bin/env bash
# `make demo`: deploy the platform onto a local sandbox host (a systemd container on
# a podman network of its own) with generated credentials, then print how to reach it.
#   hack/demo.sh up     create or update the sandbox (safe to run again)
#   hack/demo.sh down   remove the sandbox container and network; keep .demo/credentials
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"

name=mlops-demo
network=mlops-demo
demo_dir="$repo_root/.demo"
image="$MLOPS_IMAGE_PREFIX:12"

up() {
  need_root "the demo sandbox"
  bash "$repo_root/hack/bootstrap.sh"
  bash "$repo_root/hack/build-images.sh" 12
  bash "$repo_root/hack/build-minio.sh"
  activate

  podman network exists "$network" || podman network create "$network" >/dev/null
  if ! podman container exists "$name"; then
    log "starting sandbox host $name"
    # CAP_SYS_ADMIN, as a real host's systemd has it: each job's transient unit sets up
    # mount namespaces (its sandbox), and Debian 13's systemd applies MLflow's seccomp
    # hardening with it; without it every job ends 226/NAMESPACE.
    podman run -d --name "$name" --hostname "$name" --network "$network" --systemd=always --cap-add SYS_ADMIN \
      "$image" /sbin/init >/dev/null
  fi
  [ "$(podman inspect -f '{{.State.Running}}' "$name")" = true ] || podman start "$name" >/dev/null
  for _ in $(seq 60); do
    state=$(podman exec "$name" systemctl is-system-running 2>/dev/null || true)
    case "$state" in running|degraded) break ;; esac
    sleep 1
  done

  local address
  address=$(podman inspect -f "{{(index .NetworkSettings.Networks \"$network\").IPAddress}}" "$name")

  mkdir -p "$demo_dir/group_vars"
  cat >"$demo_dir/hosts.yml" <<YAML
---
# Written by hack/demo.sh: the sandbox host, reached with podman exec, runs everything.
all:
  hosts:
    $name:
      ansible_connection: mlops_podman
      ansible_pipelining: true
  children:
    postgresql: {hosts: {$name: {}}}
    minio: {hosts: {$name: {}}}
    mlflow: {hosts: {$name: {}}}
    gateway: {hosts: {$name: {}}}
    runners: {hosts: {$name: {}}}
YAML
  cat >"$demo_dir/group_vars/all.yml" <<YAML
---
# Written by hack/demo.sh. Generated passwords are kept under this directory.
mlops_credentials_dir: "$demo_dir/credentials"
postgresql_backup_enabled: true
# The sandbox is a container without NET_ADMIN: the VM's own firewall applies.
firewall_enabled: false
# The MinIO build hack/build-minio.sh cached on this machine.
minio_binary_file: "$MLOPS_MINIO_BINARY"
mlops_tracking_services:
  - name: team-a
    mlflow_port: 5001
    gateway_port: 8443
    users: [{user_name: alice}]
  - name: team-b
    mlflow_port: 5002
    gateway_port: 8444
    users: [{user_name: bob}]
# The sandbox is its own runner too: CPU only, 2 CPUs and 4 GB for jobs.
runner_cpus: 2
runner_memory_mb: 4096
runner_min_free_disk_mb: 512
YAML

  log "deploying mlops.platform.site onto $name (the first run installs MLflow: several minutes)"
  (cd "$repo_root" && ansible-playbook -i "$demo_dir/hosts.yml" playbooks/site.yml)

  local credentials="$demo_dir/credentials" ca="$demo_dir/credentials/$name/gateway/ca.crt"
  # Prove it: each service answers through the gateway with its user, and refuses without.
  local service port user code
  for service in team-a:8443:alice team-b:8444:bob; do
    IFS=: read -r service port user <<<"$service"
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 --cacert "$ca" \
      "https://$address:$port/api/2.0/mlflow/experiments/search?max_results=1")
    [ "$code" = 401 ] || die "$service without credentials answered $code, not 401"
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 --cacert "$ca" -K - \
      "https://$address:$port/api/2.0/mlflow/experiments/search?max_results=1" \
      <<<"user = \"$user:$(cut -d' ' -f1 "$credentials/tracking-services/$service/users/$user.password")\"")
    [ "$code" = 200 ] || die "$service with $user's credentials answered $code, not 200"
  done

  log "running a sample job on the sandbox's runner"
  local run_url
  run_url=$(sample_job "$address" "$ca" "$(cut -d' ' -f1 "$credentials/tracking-services/team-a/users/alice.password")")

  cat <<MSG

mlops.platform demo is up on sandbox host $name ($address, podman network $network).

  team-a   https://$address:8443   user alice
           password: $credentials/tracking-services/team-a/users/alice.password
  team-b   https://$address:8444   user bob
           password: $credentials/tracking-services/team-b/users/bob.password
  TLS      the gateway's private CA: $ca
  Log a run:
    export MLFLOW_TRACKING_URI=https://$address:8443 MLFLOW_TRACKING_USERNAME=alice
    export MLFLOW_TRACKING_PASSWORD=\$(cat $credentials/tracking-services/team-a/users/alice.password)
    export MLFLOW_TRACKING_SERVER_CERT_PATH=$ca
  Jobs:        PYTHONPATH=jobs/src .venv/bin/python -m mlops_jobs.cli list   (with the exports above;
               submit --repo URL --commit SHA -- COMMAND, logs --follow ID, cancel ID: jobs/README.md)
  Sample job:  $run_url
  Services:    .venv/bin/ansible-playbook -i $demo_dir/hosts.yml playbooks/tracking_service.yml -e op=list
  Secrets:     $credentials/ (database and S3 keys per service under tracking-services/,
               MinIO root under $name/minio/, PostgreSQL under $name/postgresql/)
  Inventory:   $demo_dir/hosts.yml (re-run: make demo; remove: make demo-destroy)
MSG
}

# A job from a small repository in the sandbox (file://): it logs a metric per epoch
# into its MLflow run and writes an output file. Prints the run's URL.
sample_job() {
  local address="$1" ca="$2" password="$3" repo=/srv/git/mlops-demo-job commit job_id status run_id experiment
  podman exec -i "$name" sh -c "rm -rf $repo && mkdir -p $repo && cat > $repo/train.py" <<'PY'
import math
import os

import mlflow

with mlflow.start_run():
    for epoch in range(5):
        mlflow.log_metric("loss", math.exp(-epoch), step=epoch)
        print("epoch", epoch, "loss", round(math.exp(-epoch), 4), flush=True)
with open(os.path.join(os.environ["MLOPS_OUTPUT_DIR"], "model.txt"), "w") as out:
    out.write("a trained model\n")
PY
  podman exec "$name" sh -c "printf 'mlflow==%s\n' \$(/opt/mlflow/services/team-a/bin/python -c 'import mlflow; print(mlflow.__version__)') > $repo/requirements.txt \
    && git init -q -b main $repo && git -C $repo add . \
    && git -C $repo -c user.name=demo -c user.email=demo@example.invalid commit -q -m 'demo job'" >&2
  commit=$(podman exec "$name" git -C "$repo" rev-parse HEAD)
  local -a job_cli=(env PYTHONPATH="$repo_root/jobs/src" MLFLOW_TRACKING_URI="https://$address:8443"
                    MLFLOW_TRACKING_USERNAME=alice MLFLOW_TRACKING_PASSWORD="$password"
                    MLFLOW_TRACKING_SERVER_CERT_PATH="$ca" python -m mlops_jobs.cli)
  job_id=$("${job_cli[@]}" submit --repo "file://$repo" --commit "$commit" --experiment demo -- python train.py \
           | python -c 'import json, sys; print(json.load(sys.stdin)["id"])')
  log "job $job_id submitted; its log while it runs (the first job makes its environment: a minute or two):" >&2
  "${job_cli[@]}" logs --follow --interval 2 "$job_id" >&2
  read -r status run_id < <("${job_cli[@]}" show "$job_id" | python -c \
    'import json, sys; j = json.load(sys.stdin); print(j["status"], j["run_id"])')
  [ "$status" = SUCCEEDED ] || die "sample job $job_id ended $status"
  experiment=$(curl -s --max-time 10 --cacert "$ca" -u "alice:$password" \
    "https://$address:8443/api/2.0/mlflow/runs/get?run_id=$run_id" \
    | python -c 'import json, sys; print(json.load(sys.stdin)["run"]["info"]["experiment_id"])')
  echo "https://$address:8443/#/experiments/$experiment/runs/$run_id"
}

down() {
  need_root "the demo sandbox"
  podman container exists "$name" && podman rm -f "$name" >/dev/null && log "removed $name"
  podman network exists "$network" && podman network rm "$network" >/dev/null && log "removed network $network"
  log "credentials kept in $demo_dir/credentials"
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) die "usage: hack/demo.sh up|down" ;;
esac
