import pytest

from ansible_collections.mlops.platform.plugins.test.hba_address import hba_address


@pytest.mark.parametrize("value", [
    "10.0.0.0/24",
    "10.0.0.5/32",
    "0.0.0.0/0",
    "fd00::/64",
    "::1/128",
    "db-client",
    "client1.example.com",
    "runner-01.dc2.example.org",
])
def test_accepts_networks_and_host_names(value):
    assert hba_address(value)


@pytest.mark.parametrize("value", [
    "",
    None,
    42,
    "10.0.0.300/24",   # not an address
    "10.0.0.1/24",     # host bits set
    "10.0.0.0/33",     # prefix too long
    "10.0.0.5",        # no prefix length
    "fd00::1",         # no prefix length
    "10.0.0.0/24 md5",  # smuggled field
    "client one",
    "-client",
    "client-.example.com",
    "a" * 64,          # label too long
    "all",             # pg_hba keywords that would open the server wide
    "samehost",
    "samenet",
    "SameNet",
])
def test_refuses_anything_else(value):
    assert not hba_address(value)
