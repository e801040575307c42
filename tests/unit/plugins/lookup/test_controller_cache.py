import pytest

from ansible.errors import AnsibleLookupError
from ansible_collections.mlops.platform.plugins.lookup.controller_cache import LookupModule, controller_cache


@pytest.mark.parametrize("environ,expected", [
    ({"MLOPS_CACHE_DIR": "/srv/cache", "XDG_CACHE_HOME": "/x", "HOME": "/home/op"}, "/srv/cache"),
    ({"MLOPS_CACHE_DIR": "", "XDG_CACHE_HOME": "/x", "HOME": "/home/op"}, "/x/mlops-platform"),
    ({"XDG_CACHE_HOME": "", "HOME": "/home/op"}, "/home/op/.cache/mlops-platform"),
], ids=["set", "empty-falls-through", "home"])
def test_the_first_place_the_environment_names(environ, expected):
    assert controller_cache(environ) == expected


def test_the_lookup_reads_the_controllers_environment_and_takes_no_terms(monkeypatch):
    monkeypatch.setenv("MLOPS_CACHE_DIR", "/var/cache/mlops")
    assert LookupModule().run([]) == ["/var/cache/mlops"]
    with pytest.raises(AnsibleLookupError, match="takes no terms"):
        LookupModule().run(["x"])
