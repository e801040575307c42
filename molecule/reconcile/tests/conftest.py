"""The platform host here is set up as the all_in_one scenario's, and that scenario runs
its tests. test_reconcile.py imports their helpers, so the files are linked here, but
only this scenario's own tests run. molecule names
every test_*.py file on pytest's command line, which collect_ignore does not apply to,
so their tests are deselected after collection."""

OTHER_SCENARIOS_TESTS = ("test_all_in_one.py", "test_operations.py")


def pytest_collection_modifyitems(config, items):
    others = [item for item in items if item.path.name in OTHER_SCENARIOS_TESTS]
    if others:
        config.hook.pytest_deselected(items=others)
        items[:] = [item for item in items if item.path.name not in OTHER_SCENARIOS_TESTS]
