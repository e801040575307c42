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


def public_options(role):
    """A role's variables: those of its main entry point; for an internal role (_common),
    which is only included through its other entry points, their inputs."""
    specs = load(role, "meta/argument_specs.yml")["argument_specs"]
    if not role.startswith("_"):
        return specs["main"]["options"]
    inputs = {}
    for name, spec in specs.items():
        if name != "main":
            inputs.update(spec["options"])
    return inputs


@pytest.mark.parametrize("role", ROLES)
def test_defaults_and_argument_specs_name_the_same_variables(role):
    defaults = load(role, "defaults/main.yml")
    options = public_options(role)
    assert sorted(defaults) == sorted(name for name, spec in options.items() if not spec.get("required"))


@pytest.mark.parametrize("role", ROLES)
def test_defaults_equal_the_documented_defaults(role):
    defaults = load(role, "defaults/main.yml")
    options = public_options(role)
    for name, value in defaults.items():
        assert options[name].get("default") == value, name


@pytest.mark.parametrize("role", ROLES)
def test_public_variables_carry_the_role_prefix_and_a_description(role):
    options = public_options(role)
    for name, spec in options.items():
        assert name.startswith(role + "_"), name
        assert spec.get("description"), name
        assert spec.get("type"), name
