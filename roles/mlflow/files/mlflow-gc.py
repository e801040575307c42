# Managed by mlops.platform.mlflow; local edits are overwritten.
"""Permanently delete what the users of one tracking service deleted: `mlflow gc` for the
runs, experiments and logged models in the `deleted` stage for longer than argv[1]
(#d#h#m#s), their database rows and their artifacts in the service's bucket.

Run by mlflow-gc@<service>.service with the service's own venv and environment file.
The backend store URI holds the database password, so it goes to `mlflow gc` inside
this process, never on a command line. Artifacts (mlflow-artifacts: URIs) are deleted
through the service's own server, which holds the bucket's keys: its address is the
one the server listens on (MLFLOW_HOST, MLFLOW_PORT; TLS when it serves TLS)."""

import os
import sys

from mlflow.cli import cli


def tracking_uri(environ):
    host = environ["MLFLOW_HOST"]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    elif ":" in host:
        host = "[%s]" % host
    scheme = "https" if "--ssl-certfile" in environ.get("MLFLOW_UVICORN_OPTS", "") else "http"
    return "%s://%s:%s" % (scheme, host, environ["MLFLOW_PORT"])


def main(argv):
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri(os.environ)
    return cli.main(args=["gc", "--backend-store-uri", os.environ["MLFLOW_BACKEND_STORE_URI"],
                          "--older-than", argv[1]], prog_name="mlflow", standalone_mode=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
