"""A private git server for the tests: git's smart HTTP protocol (git http-backend) over
the repositories under a directory, answering only requests that carry the basic-auth
credential it was given (401 otherwise), as a hosted git service does for a token.

  GIT_SERVER_CREDENTIAL=user:token python3 git_server.py ROOT PORT [ADDRESS]

Standard library only: the runner scenario runs it on a test host as well. It records
which paths came with the credential (seen), never the credential itself.
"""

import base64
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class GitHandler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's names)
        self.serve()

    def do_POST(self):  # noqa: N802
        self.serve()

    def log_message(self, *_args):
        """Quiet: the tests read `seen`."""

    def serve(self):
        path, _sep, query = self.path.partition("?")
        authorized = self.headers.get("Authorization") == self.server.expected
        self.server.seen.append((path, authorized))
        if not authorized:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        env = dict(os.environ, GIT_PROJECT_ROOT=self.server.root, GIT_HTTP_EXPORT_ALL="1", PATH_INFO=path,
                   QUERY_STRING=query, REQUEST_METHOD=self.command, REMOTE_USER="git", REMOTE_ADDR="127.0.0.1",
                   CONTENT_TYPE=self.headers.get("Content-Type", ""), CONTENT_LENGTH=str(len(body)),
                   GIT_PROTOCOL=self.headers.get("Git-Protocol", ""),
                   HTTP_CONTENT_ENCODING=self.headers.get("Content-Encoding", ""))
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False).stdout
        head, _sep, payload = out.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode("latin-1").split("\r\n"):
            key, _sep, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.split()[0])
            elif key:
                headers.append((key, value.strip()))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def serve(root, port, address="127.0.0.1", credential=None):
    """A started server (in a thread) for the repositories under root; .shutdown() stops it."""
    server = ThreadingHTTPServer((address, port), GitHandler)
    server.root = root
    server.seen = []
    credential = credential or os.environ["GIT_SERVER_CREDENTIAL"]
    server.expected = "Basic " + base64.b64encode(credential.encode()).decode()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


if __name__ == "__main__":
    started = serve(sys.argv[1], int(sys.argv[2]), *(sys.argv[3:4] or ["127.0.0.1"]))
    threading.Event().wait()
