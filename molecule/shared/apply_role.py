"""Run molecule/shared/apply_role.yml from a scenario's verify tests."""

import json
import os
import pathlib
import subprocess
import tempfile

PLAYBOOK = pathlib.Path(__file__).with_name("apply_role.yml")


def apply_role(role, target, variables, *extra):
    """Apply role to target with variables (in a 0600 file, not on the command line)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(dict(variables, role_under_test=role), f)
    os.chmod(f.name, 0o600)
    try:
        return subprocess.run(
            ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "--limit", target,
             "-e", "@" + f.name, str(PLAYBOOK), *extra],
            capture_output=True, text=True, timeout=900, check=False,
            # Plain text: molecule forces colour on for its own runs.
            env=dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", PY_COLORS="0"),
        )
    finally:
        os.unlink(f.name)
