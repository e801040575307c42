# Managed by mlops.platform.watchdog; local edits are overwritten.
# Run by mlops-watchdog.service with the host's python3 (standard library only).
"""Restart a service of the platform that hangs: it runs, but does not answer.

systemd restarts a process that dies (each unit's Restart=); nothing restarts one that
is alive and stuck (a deadlock, a stopped process, an exhausted thread pool). This loop
asks each service in the check files of CHECK_DIR, every INTERVAL seconds and all at
once, whether it answers: an HTTP service any HTTP response (a 401, 404 or 503 is an
answer; the probe sends no credential and reads nothing), PostgreSQL the one byte its
server sends back to an SSL request on its socket (what pg_isready asks, no login).
A unit that gives no answer within TIMEOUT seconds MISSES times in a row is killed
(SIGKILL to every process of the unit); its restart policy starts it again.

A unit is asked only while it is active and has been for GRACE seconds: a unit that is
starting, stopping or stopped is the operator's or systemd's business, not a hang.
The watchdog checks liveness only, never a dependency: MLflow's /health does not touch
the database, so a PostgreSQL outage does not make it restart every tracking service.

Check files are JSON lists of {"unit": ..., "http": URL} or {"unit": ..., "postgresql":
SOCKET PATH}, one file per role; they are read again every round, so a role changes its
checks without restarting the watchdog.
"""

import argparse
import concurrent.futures
import glob
import http.client
import json
import socket
import ssl
import struct
import subprocess
import sys
import time
import urllib.parse

# PostgreSQL's SSLRequest: length 8, code 1234.5679; the server answers b"S" or b"N".
SSL_REQUEST = struct.pack("!ii", 8, 80877103)


def log(message):
    print(message, flush=True)


def load_checks(directory):
    """Every check of every *.json file; a file that cannot be read is reported and skipped."""
    checks = []
    for path in sorted(glob.glob(directory + "/*.json")):
        try:
            with open(path, encoding="utf-8") as handle:
                entries = json.load(handle)
        except (OSError, ValueError) as exc:
            log("%s: not read (%s); its checks are skipped" % (path, exc))
            continue
        checks += [entry for entry in entries if isinstance(entry, dict) and entry.get("unit")]
    return checks


def probe_http(url, timeout):
    """True when anything answers HTTP at url within timeout; otherwise the reason."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        # Liveness only: no credential goes out and nothing is read but a status line,
        # so the server's identity does not matter here (its clients verify it).
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout, context=context)
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request("GET", parts.path or "/", headers={"User-Agent": "mlops-watchdog"})
        connection.getresponse().read(4096)
        return True
    except (OSError, http.client.HTTPException) as exc:
        return "no answer from %s within %g s (%s)" % (url, timeout, exc or type(exc).__name__)
    finally:
        connection.close()


def probe_postgresql(socket_path, timeout):
    """True when the PostgreSQL server on socket_path answers an SSL request within timeout."""
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(timeout)
    try:
        client.connect(socket_path)
        client.sendall(SSL_REQUEST)
        if client.recv(1) in (b"S", b"N"):
            return True
        return "PostgreSQL at %s closed the connection without an answer" % socket_path
    except OSError as exc:
        return "no answer from PostgreSQL at %s within %g s (%s)" % (socket_path, timeout, exc or type(exc).__name__)
    finally:
        client.close()


def probe(check, timeout):
    if check.get("postgresql"):
        return probe_postgresql(check["postgresql"], timeout)
    return probe_http(check["http"], timeout)


def unit_state(unit):
    """ActiveState, seconds since the unit became active, and its invocation id."""
    output = subprocess.run(
        ["systemctl", "show", unit, "--property=ActiveState,ActiveEnterTimestampMonotonic,InvocationID"],
        capture_output=True, text=True, check=False).stdout
    values = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
    entered = int(values.get("ActiveEnterTimestampMonotonic") or 0) / 1e6
    active_for = time.clock_gettime(time.CLOCK_MONOTONIC) - entered if entered else 0.0
    return values.get("ActiveState", ""), active_for, values.get("InvocationID", "")


def verdict(misses, state, active_for, answer, grace, allowed):
    """What to do with a unit after one round: ("skip"|"ok"|"miss"|"kill", misses now).

    misses counts the rounds in a row without an answer during the unit's current run;
    the caller resets it when the unit's invocation changes."""
    if state != "active" or active_for < grace:
        return "skip", 0
    if answer is True:
        return "ok", 0
    misses += 1
    return ("kill" if misses >= allowed else "miss"), misses


class Watchdog:
    def __init__(self, directory, interval, timeout, misses, grace):
        self.directory = directory
        self.interval = interval
        self.timeout = timeout
        self.allowed = misses
        self.grace = grace
        self.misses = {}  # unit -> (invocation id, misses)

    def round(self, pool):
        checks = load_checks(self.directory)
        states = {check["unit"]: unit_state(check["unit"]) for check in checks}
        asked = [check for check in checks
                 if states[check["unit"]][0] == "active" and states[check["unit"]][1] >= self.grace]
        answers = dict(zip([check["unit"] for check in asked],
                           pool.map(lambda check: probe(check, self.timeout), asked)))
        for check in checks:
            unit = check["unit"]
            state, active_for, invocation = states[unit]
            last_invocation, misses = self.misses.get(unit, (invocation, 0))
            if invocation != last_invocation:
                misses = 0
            action, misses = verdict(misses, state, active_for, answers.get(unit), self.grace, self.allowed)
            self.misses[unit] = (invocation, misses)
            if action == "miss":
                log("%s: %s (%d of %d)" % (unit, answers[unit], misses, self.allowed))
            elif action == "kill":
                log("%s: %s (%d of %d); killing every process of the unit (SIGKILL), its restart policy starts it "
                    "again" % (unit, answers[unit], misses, self.allowed))
                subprocess.run(["systemctl", "kill", "--signal=SIGKILL", unit], check=False)
                self.misses[unit] = (invocation, 0)

    def run(self):
        log("watching the units of %s/*.json every %g s: %d answers missed in a row (%g s each) kill a unit; "
            "not within %g s of its start" % (self.directory, self.interval, self.allowed, self.timeout, self.grace))
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            while True:
                started = time.monotonic()
                self.round(pool)
                time.sleep(max(0.0, self.interval - (time.monotonic() - started)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", required=True, help="directory of the *.json check files")
    parser.add_argument("--interval", type=float, default=10)
    parser.add_argument("--timeout", type=float, default=10)
    parser.add_argument("--misses", type=int, default=3)
    parser.add_argument("--grace", type=float, default=120)
    args = parser.parse_args(argv)
    Watchdog(args.checks, args.interval, args.timeout, args.misses, args.grace).run()


if __name__ == "__main__":
    sys.exit(main())
