#!/usr/bin/env bash
# `make bench-artifacts`: large-artifact throughput of tracking service team-a on the demo
# sandbox, through the gateway with the standard MLflow client against the same client
# machine straight to the artifact store (boto3 with the service's keys), in one run
# (hack/bench_artifacts.py; the client runs on the sandbox host, as the issue's figures
# were taken). A third path, the same HTTP calls straight to MLflow's port, tells the
# gateway's share (nginx, TLS, auth) from MLflow's proxy's. Prints the medians of the
# rounds and each ratio to the store with its range (docs/benchmarks.md).
#   BENCH_ARTIFACT_MB=256 BENCH_ROUNDS=3 bash hack/bench_artifacts.sh
# BENCH_HOST / BENCH_CREDENTIALS as for hack/bench.sh (an all-in-one host: MLflow and
# MinIO on loopback without TLS, team-a on 8443, its user alice).
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"

host=${BENCH_HOST:-mlops-demo}
credentials=${BENCH_CREDENTIALS:-$repo_root/.demo/credentials}
megabytes=${BENCH_ARTIFACT_MB:-256}
rounds=${BENCH_ROUNDS:-3}

if [ -z "${BENCH_HOST:-}" ]; then
  bash "$repo_root/hack/demo.sh" up >/dev/null
fi
podman cp "$repo_root/hack/bench_artifacts.py" "$host:/root/bench_artifacts.py"
password_file="$credentials/tracking-services/team-a/users/alice.password"
if [ -n "${BENCH_PASSWORD:-}" ]; then password=$BENCH_PASSWORD; else password=$(cut -d' ' -f1 "$password_file"); fi
export BENCH_PASSWORD="$password"

log "measuring: $rounds rounds, each a $megabytes MB upload and download on three paths"
results=$(mktemp)
trap 'rm -f "$results"' EXIT
podman exec -e BENCH_PASSWORD -e PYTHONWARNINGS=ignore "$host" /opt/mlflow/services/team-a/bin/python \
  /root/bench_artifacts.py team-a "$megabytes" "$rounds" --gateway https://127.0.0.1:8443 --user alice \
  --cafile /etc/nginx/mlops/tls/ca.crt | tee "$results"

python3 - "$results" "$megabytes" "$rounds" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    row = json.loads(line)
    rows.setdefault((row["path"], row["direction"]), {})[row["round"]] = row["mb_per_s"]
megabytes, rounds = sys.argv[2], int(sys.argv[3])
label = {"gateway": "MLflow client through the gateway (TLS, basic auth)",
         "mlflow": "the same calls straight to MLflow's port",
         "s3": "boto3 straight to the artifact store (the peer)"}
print()
print("Medians of %d rounds, %s MB per transfer, MB/s:" % (rounds, megabytes))
print()
print("| path | upload | download |")
print("| --- | --- | --- |")
for path in ("gateway", "mlflow", "s3"):
    print("| %s | %.0f | %.0f |" % (label[path], statistics.median(rows[(path, "upload")].values()),
                                   statistics.median(rows[(path, "download")].values())))
print()
print("| ratio | median | min .. max of the rounds | target | met (median) |")
print("| --- | --- | --- | --- | --- |")
for path, target in (("gateway", 0.8), ("mlflow", None)):
    for direction in ("upload", "download"):
        ours, peer = rows[(path, direction)], rows[("s3", direction)]
        values = [ours[r] / peer[r] for r in sorted(ours)]
        value = statistics.median(values)
        print("| %s %s / store | %.2f | %.2f .. %.2f | %s | %s |" % (
            path, direction, value, min(values), max(values), ">= %.1f" % target if target else "-",
            ("yes" if value >= target else "NO") if target else "-"))
PY
