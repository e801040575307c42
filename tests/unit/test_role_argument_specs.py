"""meta/argument_specs.yml is each role's contract: it must match defaults/main.yml."""

import pathlib

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
ROLES = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "meta" / "argument_specs.yml").exists())


def load(role, relative):
    with open(REPO / "roles" / role / relative) as f:
        return yaml.safe_load(f) or {}


def test_every_role_has_a_contract():
    all_roles = sorted(p.name for p in (REPO / "roles").iterdir() if p.is_dir())
    assert ROLES == all_roles
    assert ROLES, "no roles found"


@pytest.mark.parametrize("role", ROLES)
def test_defaults_and_argument_specs_name_the_same_variables(role):
    defaults = load(role, "defaults/main.yml")
    options = load(role, "meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    assert sorted(defaults) == sorted(options)


@pytest.mark.parametrize("role", ROLES)
def test_defaults_equal_the_documented_defaults(role):
    defaults = load(role, "defaults/main.yml")
    options = load(role, "meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    for name, value in defaults.items():
        assert options[name].get("default") == value, name


@pytest.mark.parametrize("role", ROLES)
def test_public_variables_carry_the_role_prefix_and_a_description(role):
    options = load(role, "meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    for name, spec in options.items():
        assert name.startswith(role + "_"), name
        assert spec.get("description"), name
        assert spec.get("type"), name
