"""Run molecule/shared/apply_role.yml from a scenario's verify tests."""

import pathlib

from playbooks import ansible_playbook

PLAYBOOK = pathlib.Path(__file__).with_name("apply_role.yml")


def apply_role(role, target, variables, *extra):
    """Apply role to target with variables (in a 0600 file, not on the command line);
    returns the CompletedProcess."""
    return ansible_playbook(PLAYBOOK, dict(variables, role_under_test=role), "--limit", target, *extra, timeout=900)
