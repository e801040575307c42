"""mlops.platform's training jobs: the PostgreSQL queue, the submission API, the CLI."""

__version__ = "0.1.0"
