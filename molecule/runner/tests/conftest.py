"""The all-in-one host here is the all_in_one scenario's platform, and that scenario runs
its tests (on Debian 13; this one runs on 12). test_reconcile.py imports their helpers,
so the files are linked here, but only this scenario's own tests are collected."""

collect_ignore = ["test_all_in_one.py", "test_operations.py"]
