import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.mlops.platform.plugins.filter.postgresql_memory import postgresql_memory


def mb(value):
    assert value.endswith("MB")
    return int(value[:-2])


def test_quarter_three_quarters_and_a_sixteenth_of_ram():
    settings = postgresql_memory(16384, 100)
    assert settings == {
        "shared_buffers": "4096MB",
        "effective_cache_size": "12288MB",
        "maintenance_work_mem": "1024MB",
        "work_mem": "40MB",
    }


def test_small_host_gets_floors():
    settings = postgresql_memory(256, 100)
    assert mb(settings["shared_buffers"]) == 128
    assert mb(settings["maintenance_work_mem"]) == 64
    assert mb(settings["work_mem"]) == 4
    assert mb(settings["effective_cache_size"]) >= mb(settings["shared_buffers"])


def test_large_host_gets_caps():
    settings = postgresql_memory(512 * 1024, 100)
    assert mb(settings["shared_buffers"]) == 16 * 1024
    assert mb(settings["maintenance_work_mem"]) == 2 * 1024
    assert mb(settings["effective_cache_size"]) == 384 * 1024


def test_more_connections_mean_less_work_mem_each():
    assert mb(postgresql_memory(8192, 400)["work_mem"]) < mb(postgresql_memory(8192, 100)["work_mem"])


def test_accepts_strings_as_ansible_facts_may_be_templated():
    assert postgresql_memory("8192", "100") == postgresql_memory(8192, 100)


@pytest.mark.parametrize("memory,connections", [(0, 100), (-1, 100), (1024, 0), ("lots", 100), (None, 100)])
def test_rejects_nonsense(memory, connections):
    with pytest.raises(AnsibleFilterError):
        postgresql_memory(memory, connections)
