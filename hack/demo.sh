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

  local subnet address
  subnet=$(podman network inspect "$network" -f '{{range .Subnets}}{{.Subnet}}{{end}}')
  address=$(podman inspect -f "{{(index .NetworkSettings.Networks \"$network\").IPAddress}}" "$name")

  mkdir -p "$demo_dir/group_vars"
  cat >"$demo_dir/hosts.yml" <<YAML
---
# Written by hack/demo.sh: the sandbox host, reached with podman exec.
all:
  children:
    postgresql:
      hosts:
        $name:
          ansible_connection: containers.podman.podman
    minio:
      hosts:
        $name:
YAML
  cat >"$demo_dir/group_vars/all.yml" <<YAML
---
# Written by hack/demo.sh. Generated passwords are kept under this directory.
mlops_credentials_dir: "$demo_dir/credentials"
postgresql_listen_addresses: ["*"]
postgresql_clients:
  - address: "$subnet"
postgresql_databases:
  - name: mlflow
    owner: mlflow
postgresql_backup_enabled: true
# The MinIO build hack/build-minio.sh cached on this machine.
minio_binary_file: "$MLOPS_MINIO_BINARY"
YAML

  log "deploying mlops.platform.site onto $name"
  (cd "$repo_root" && ansible-playbook -i "$demo_dir/hosts.yml" playbooks/site.yml)

  local password_file="$demo_dir/credentials/$name/postgresql/mlflow.password"
  [ -f "$password_file" ] || die "expected generated password at $password_file"
  # Prove it: log in from this machine over the sandbox network with those credentials.
  local pgpass
  pgpass=$(mktemp)
  trap 'rm -f "$pgpass"' RETURN
  printf '%s:5432:mlflow:mlflow:%s\n' "$address" "$(cut -d' ' -f1 "$password_file")" >"$pgpass"
  PGPASSFILE=$pgpass PGCONNECT_TIMEOUT=5 psql -w -h "$address" -U mlflow -d mlflow -Atc 'SELECT version()' >/dev/null \
    || die "could not log in to PostgreSQL at $address as mlflow"
  curl -fsS -o /dev/null --max-time 5 "http://$address:9000/minio/health/ready" \
    || die "MinIO at $address:9000 is not ready"
  local minio_credentials="$demo_dir/credentials/$name/minio"

  cat <<MSG

mlops.platform demo is up on sandbox host $name ($address, podman network $network).

  PostgreSQL   host $address  port 5432  database mlflow  user mlflow
               password: first word of $password_file
  Connect:     psql -h $address -U mlflow mlflow   (it asks for the password)
  MinIO        S3 API http://$address:9000  console http://$address:9001
               root user: $minio_credentials/root_user
               root password: $minio_credentials/root_password
  Backups:     daily at 02:30 into /var/backups/postgresql on the sandbox
               (run one now: podman exec $name systemctl start mlops-postgresql-backup.service)
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
