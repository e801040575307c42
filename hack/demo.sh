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
    podman run -d --name "$name" --hostname "$name" --network "$network" --systemd=always "$image" /sbin/init >/dev/null
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
YAML
  cat >"$demo_dir/group_vars/all.yml" <<YAML
---
# Written by hack/demo.sh. Generated passwords are kept under this directory.
mlops_credentials_dir: "$demo_dir/credentials"
postgresql_backup_enabled: true
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
  Services:    .venv/bin/ansible-playbook -i $demo_dir/hosts.yml playbooks/tracking_service.yml -e op=list
  Secrets:     $credentials/ (database and S3 keys per service under tracking-services/,
               MinIO root under $name/minio/, PostgreSQL under $name/postgresql/)
  Inventory:   $demo_dir/hosts.yml (re-run: make demo; remove: make demo-destroy)
MSG
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
