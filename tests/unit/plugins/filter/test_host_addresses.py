"""host_addresses: the address other platform hosts use for each host."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.mlops.platform.plugins.filter.host_addresses import host_addresses

HOSTVARS = {
    "db1": {"ansible_host": "192.0.2.20"},
    "mlflow1": {"ansible_host": "203.0.113.5", "mlops_address": "10.0.0.5"},
    "mlflow2": {"ansible_host": ""},
    "gw": {},
}


def test_mlops_address_wins_then_ansible_host_then_the_name():
    assert host_addresses(["mlflow1", "db1", "gw", "mlflow2"], HOSTVARS) == ["10.0.0.5", "192.0.2.20", "gw", "mlflow2"]


def test_a_host_unknown_to_hostvars_is_its_name():
    assert host_addresses(["elsewhere"], HOSTVARS) == ["elsewhere"]


def test_no_hosts_no_addresses():
    assert host_addresses([], HOSTVARS) == []


def test_a_single_name_is_refused():
    with pytest.raises(AnsibleFilterError, match="list of host names"):
        host_addresses("mlflow1", HOSTVARS)


def test_the_local_host_is_loopback_and_the_others_keep_their_address():
    assert host_addresses(["mlflow1", "db1"], HOSTVARS, local="mlflow1") == ["127.0.0.1", "192.0.2.20"]
    assert host_addresses(["mlflow1"], HOSTVARS, local="db1") == ["10.0.0.5"]
