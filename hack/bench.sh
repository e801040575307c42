#!/usr/bin/env bash
# The scripts in single quotes run on the sandbox host and expand their variables there.
# shellcheck disable=SC2016
# `make bench`: log-metric throughput and server memory of a tracking service of this
# collection against the plain server of the seed tutorial, both on the demo sandbox,
# measured in the same run by the same load generator (hack/bench_load.py):
#   plain  `mlflow server` as the tutorial starts it (pip install mlflow psycopg2-binary
#          boto3; 4 workers, job execution on), same PostgreSQL and MinIO, no gateway
#   ours   team-a through the gateway (TLS, basic auth with its cache)
#   noauth the same gateway server without auth, to price the auth alone
# Prints the medians of interleaved rounds and each ratio the collection promises with
# its median and range over the rounds (docs/benchmarks.md).
#   BENCH_SECONDS=10 BENCH_ROUNDS=5 bash hack/bench.sh
# BENCH_HOST / BENCH_CREDENTIALS point it at another converged all-in-one host (with
# team-a on 8443 and its user alice) instead of the demo sandbox.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "$0")/lib.sh"

host=${BENCH_HOST:-mlops-demo}
credentials=${BENCH_CREDENTIALS:-$repo_root/.demo/credentials}
seconds=${BENCH_SECONDS:-10}
rounds=${BENCH_ROUNDS:-5}
plain_port=5100
noauth_port=8499
noauth_conf=/etc/nginx/conf.d/zz-mlops-bench-noauth.conf

in_host() { podman exec "$host" bash -c "$1"; }

if [ -z "${BENCH_HOST:-}" ]; then
  bash "$repo_root/hack/demo.sh" up >/dev/null
fi
podman cp "$repo_root/hack/bench_load.py" "$host:/root/bench_load.py"

cleanup() {
  in_host "systemctl stop mlops-bench-plain.service 2>/dev/null; rm -f $noauth_conf && nginx -t -q && systemctl reload nginx" || true
}
trap cleanup EXIT

log "preparing the plain server of the seed tutorial"
in_host '
set -euo pipefail
wheels=$(ls -d /var/cache/mlflow/mlflow-3.17.2-*/ | sed -n 1p)
if [ ! -x /opt/bench-plain/bin/mlflow ]; then
  python3 -m venv /opt/bench-plain
  PIP_NO_INDEX=1 PIP_FIND_LINKS=$wheels /opt/bench-plain/bin/pip install -q mlflow==3.17.2 psycopg2-binary boto3
fi
if [ ! -s /root/bench-plain.env ]; then
  password=$(head -c 18 /dev/urandom | base64 | tr -dc A-Za-z0-9)
  printf "CREATE ROLE bench_plain LOGIN PASSWORD %s;\nCREATE DATABASE bench_plain OWNER bench_plain;\n" "'"'"'$password'"'"'" \
    | runuser -u postgres -- psql -q
  . <(grep -E "^AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY)=" /etc/mlflow/services/team-a.env)
  umask 077
  cat >/root/bench-plain.env <<ENV
MLFLOW_BACKEND_STORE_URI=postgresql+psycopg2://bench_plain:$password@127.0.0.1:5432/bench_plain
MLFLOW_ARTIFACTS_DESTINATION=s3://mlflow-team-a/bench-plain
MLFLOW_S3_ENDPOINT_URL=http://127.0.0.1:9000
AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID
AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
ENV
fi
systemctl stop mlops-bench-plain.service 2>/dev/null || true
systemctl reset-failed mlops-bench-plain.service 2>/dev/null || true
systemd-run -q --unit=mlops-bench-plain -p EnvironmentFile=/root/bench-plain.env -p WorkingDirectory=/tmp \
  /opt/bench-plain/bin/mlflow server --host 127.0.0.1 --port '"$plain_port"'
for _ in $(seq 180); do
  python3 -c "import urllib.request; urllib.request.urlopen(\"http://127.0.0.1:'"$plain_port"'/health\", timeout=2)" \
    2>/dev/null && exit 0
  sleep 1
done
echo "the plain server did not answer /health" >&2; exit 1
'

log "adding a bench-only gateway server without auth on port $noauth_port"
in_host "
set -euo pipefail
conf=\$(grep -l 'listen .*:8443' /etc/nginx/conf.d/*.conf | sed -n 1p)
# Same server, minus the upstream block (shared), auth and IPv6; MLflow is told the
# Host of the real server so its allowed-hosts check passes as for that server.
sed -e '/^upstream/,/^}/d' -e '/auth_request/d' -e 's/:8443/:$noauth_port/' -e '/listen \\[::\\]/d' \
  -e 's/proxy_set_header Host .*/proxy_set_header Host 127.0.0.1:8443;/' \
  -e '/^ *location = .*auth/,/^    }/d' \"\$conf\" >$noauth_conf
nginx -t -q && systemctl reload nginx
"

password_file="$credentials/tracking-services/team-a/users/alice.password"
if [ -n "${BENCH_PASSWORD:-}" ]; then password=$BENCH_PASSWORD; else password=$(cut -d' ' -f1 "$password_file"); fi
export BENCH_PASSWORD="$password"
load() { # "ROUND NAME" URL CLIENTS [ARGS...]
  local name=$1 url=$2 clients=$3
  shift 3
  podman exec -e BENCH_PASSWORD "$host" /opt/mlflow/services/team-a/bin/python /root/bench_load.py "$url" "$clients" "$seconds" "$@" \
    | sed -n '$p' | sed "s/^/$name $clients /"
}
rss_mb() { # UNIT: resident memory of the unit's processes, MB
  in_host "python3 - \$(systemctl show -p MainPID --value $1) <<'PY'
import os, sys
root = int(sys.argv[1]); children = {}
for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
        ppid = int(open('/proc/%s/stat' % pid).read().rsplit(')', 1)[1].split()[1])
    except OSError:
        continue
    children.setdefault(ppid, []).append(int(pid))
todo, total = [root], 0
while todo:
    pid = todo.pop(); todo += children.get(pid, [])
    for line in open('/proc/%d/status' % pid):
        if line.startswith('VmRSS:'):
            total += int(line.split()[1])
print(total // 1024)
PY"
}

log "measuring: $rounds rounds of six figures (plain, ours, noauth at 1 and 8 clients), $seconds s each after 2 s of warm-up"
results=$(mktemp)
trap 'rm -f "$results"; cleanup' EXIT
# Interleaved rounds, the order of the three setups rotating from round to round, so a
# slow spell of the machine falls on every setup alike; each ratio is taken within a
# round and the median of the rounds is quoted, with its range.
setups=(plain ours noauth)
for round in $(seq "$rounds"); do
  for clients in 1 8; do
    for i in 0 1 2; do
      name=${setups[$(((round + i) % 3))]}
      case $name in
        plain) load "$round plain" "http://127.0.0.1:$plain_port" "$clients" ;;
        ours) load "$round ours" "https://127.0.0.1:8443" "$clients" --user alice --cafile /etc/nginx/mlops/tls/ca.crt ;;
        noauth) load "$round noauth" "https://127.0.0.1:$noauth_port" "$clients" --cafile /etc/nginx/mlops/tls/ca.crt ;;
      esac
    done
  done >>"$results"
  log "round $round of $rounds done"
done
plain_rss=$(rss_mb mlops-bench-plain.service)
ours_rss=$(rss_mb mlflow@team-a.service)

python3 - "$results" "$plain_rss" "$ours_rss" "$seconds" "$rounds" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    round_, name, clients, data = line.split(" ", 3)
    rows.setdefault((name, int(clients)), {})[int(round_)] = json.loads(data)
plain_rss, ours_rss, seconds, rounds = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
label = {"plain": "plain `mlflow server` (seed tutorial), direct",
         "ours": "mlops.platform team-a, gateway TLS + basic auth",
         "noauth": "mlops.platform team-a, same gateway without auth"}
def med(name, clients, key):
    return round(statistics.median(r[key] for r in rows[(name, clients)].values()), 1)
print("Medians of %d rounds:" % rounds)
print()
print("| setup | 1 client req/s | p50 ms | 8 clients req/s | p50 ms | p95 ms | errors | server RSS MB |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for name in ("plain", "ours", "noauth"):
    errors = sum(r["errors"] for c in (1, 8) for r in rows[(name, c)].values())
    rss = {"plain": plain_rss, "ours": ours_rss}.get(name, "")
    print("| %s | %s | %s | %s | %s | %s | %d | %s |" % (label[name], med(name, 1, "rps"), med(name, 1, "p50_ms"),
          med(name, 8, "rps"), med(name, 8, "p50_ms"), med(name, 8, "p95_ms"), errors, rss))
def per_round(a, b, clients, cost=False):
    values = []
    for r in sorted(rows[(a, clients)]):
        x, y = rows[(a, clients)][r]["rps"], rows[(b, clients)][r]["rps"]
        ratio = x / y if y else float("inf")
        values.append(1 - ratio if cost else ratio)
    return values
checks = [
    ("throughput at 1 client, ours / plain", per_round("ours", "plain", 1), ">= 6.0"),
    ("throughput at 8 clients, ours / plain", per_round("ours", "plain", 8), ">= 1.6"),
    ("auth cost at 1 client, 1 - auth / noauth", per_round("ours", "noauth", 1, True), "< 0.10"),
    ("auth cost at 8 clients, 1 - auth / noauth", per_round("ours", "noauth", 8, True), "< 0.10"),
    ("server memory, ours / plain", [ours_rss / plain_rss], "<= 0.4"),
]
print()
print("| ratio | median | min .. max of the rounds | target | met (median) |")
print("| --- | --- | --- | --- | --- |")
for text, values, target in checks:
    value = statistics.median(values)
    op, bound = target.split()
    met = {">=": value >= float(bound), "<": value < float(bound), "<=": value <= float(bound)}[op]
    print("| %s | %.2f | %.2f .. %.2f | %s | %s |" % (text, value, min(values), max(values), target,
                                                       "yes" if met else "NO"))
print()
print("%d rounds; %s s per figure after 2 s of warm-up; errors count non-200 answers; memory after the load."
      % (rounds, seconds))
PY
