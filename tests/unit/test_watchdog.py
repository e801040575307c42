"""The watchdog's program (roles/watchdog/files/mlops-watchdog.py): when a unit counts
as hung, what its probes take for an answer, and what one round does with both. The
probes talk to real sockets on loopback; systemctl is replaced only in the round's test."""

import http.server
import importlib.machinery
import importlib.util
import json
import pathlib
import socket
import threading

import pytest

PROGRAM = pathlib.Path(__file__).resolve().parents[2] / "roles/watchdog/files/mlops-watchdog.py"
_loader = importlib.machinery.SourceFileLoader("mlops_watchdog", str(PROGRAM))
_spec = importlib.util.spec_from_loader("mlops_watchdog", _loader)
watchdog = importlib.util.module_from_spec(_spec)
_loader.exec_module(watchdog)


@pytest.mark.parametrize("state,active_for,answer,misses,expected", [
    ("activating", 500, "no answer", 2, ("skip", 0)),  # starting: not asked
    ("inactive", 500, None, 2, ("skip", 0)),  # stopped by the operator
    ("active", 30, "no answer", 2, ("skip", 0)),  # within its grace after a start
    ("active", 500, True, 2, ("ok", 0)),  # an answer clears the misses
    ("active", 500, "no answer", 0, ("miss", 1)),
    ("active", 500, "no answer", 1, ("miss", 2)),
    ("active", 500, "no answer", 2, ("kill", 3)),  # the third in a row
])
def test_a_unit_is_killed_after_the_allowed_misses_in_a_row_and_only_while_active(state, active_for, answer, misses,
                                                                                  expected):
    assert watchdog.verdict(misses, state, active_for, answer, grace=120, allowed=3) == expected


def test_checks_are_read_from_every_file_and_a_broken_file_is_skipped(tmp_path, capsys):
    (tmp_path / "mlflow.json").write_text(json.dumps([{"unit": "mlflow@a.service", "http": "http://127.0.0.1:1/"},
                                                      {"http": "http://127.0.0.1:2/"}]))
    (tmp_path / "postgresql.json").write_text(json.dumps([{"unit": "p.service", "postgresql": "/run/p/.s.PGSQL.1"}]))
    (tmp_path / "broken.json").write_text("[{")
    (tmp_path / "notes.txt").write_text("not a check file")
    assert [check["unit"] for check in watchdog.load_checks(str(tmp_path))] == ["mlflow@a.service", "p.service"]
    assert "broken.json: not read" in capsys.readouterr().out


class _Answers(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # pylint: disable=invalid-name
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):  # pylint: disable=arguments-differ
        pass


@pytest.fixture(name="http_server")
def _http_server():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Answers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d/health" % server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(name="silent_listener")
def _silent_listener():
    """A TCP socket that listens but never accepts: the kernel completes the handshake,
    nothing answers (a hung server)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield listener.getsockname()[1]
    listener.close()


def test_any_http_status_is_an_answer(http_server):
    assert watchdog.probe_http(http_server, timeout=5) is True


def test_a_server_that_accepts_but_does_not_answer_is_no_answer(silent_listener):
    reason = watchdog.probe_http("http://127.0.0.1:%d/health" % silent_listener, timeout=0.5)
    assert reason is not True and "no answer from http://127.0.0.1:%d/health within 0.5 s" % silent_listener in reason


def test_a_port_nobody_listens_on_is_no_answer(silent_listener):
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    assert watchdog.probe_http("http://127.0.0.1:%d/" % port, timeout=1) is not True


def _unix_server(path, reply):
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)

    def serve():
        connection, _address = server.accept()
        request = connection.recv(8)
        if reply is not None and request == watchdog.SSL_REQUEST:
            connection.sendall(reply)
        threading.Event().wait(2)
        connection.close()

    threading.Thread(target=serve, daemon=True).start()
    return server


@pytest.mark.parametrize("reply,alive", [(b"N", True), (b"S", True), (None, False)])
def test_postgresql_answers_an_ssl_request_with_one_byte(tmp_path, reply, alive):
    path = tmp_path / ".s.PGSQL.5432"
    server = _unix_server(path, reply)
    try:
        assert (watchdog.probe_postgresql(str(path), timeout=0.5) is True) == alive
    finally:
        server.close()


def test_a_round_kills_the_unit_that_missed_its_answers_and_a_restart_clears_the_count(tmp_path, monkeypatch):
    (tmp_path / "checks.json").write_text(json.dumps([{"unit": "hung.service", "http": "http://hung/"},
                                                      {"unit": "fine.service", "http": "http://fine/"}]))
    invocation = {"hung.service": "a", "fine.service": "x"}
    killed = []
    monkeypatch.setattr(watchdog, "unit_state", lambda unit: ("active", 500.0, invocation[unit]))
    monkeypatch.setattr(watchdog, "probe", lambda check, timeout: True if "fine" in check["http"] else "no answer")
    monkeypatch.setattr(watchdog.subprocess, "run", lambda argv, check: killed.append(argv))
    dog = watchdog.Watchdog(str(tmp_path), interval=10, timeout=10, misses=2, grace=120)
    with watchdog.concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        dog.round(pool)
        assert not killed and dog.misses["hung.service"] == ("a", 1)
        invocation["hung.service"] = "b"  # restarted by someone else: counting starts again
        dog.round(pool)
        assert not killed and dog.misses["hung.service"] == ("b", 1)
        dog.round(pool)
    assert killed == [["systemctl", "kill", "--signal=SIGKILL", "hung.service"]]
    assert dog.misses["fine.service"] == ("x", 0)
