"""Run a playbook against the scenario's inventory from its verify tests, and read the recap."""

import json
import os
import re
import subprocess
import tempfile


def run_playbook(playbook, extra_vars, timeout=1500):
    """ansible-playbook PLAYBOOK (a path or a collection playbook name) with extra_vars (in a
    0600 file, not on the command line); returns (exit status, stdout and stderr)."""
    inventory = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "inventory")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(extra_vars, f)
    os.chmod(f.name, 0o600)
    try:
        done = subprocess.run(["ansible-playbook", "-i", inventory, "-e", "@" + f.name, str(playbook)],
                              capture_output=True, text=True, timeout=timeout, check=False,
                              # Plain text: molecule forces colour on for its own runs.
                              env=dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", PY_COLORS="0"))
    finally:
        os.unlink(f.name)
    return done.returncode, done.stdout + done.stderr


def recap_changed(output):
    """The changed= count of every host in the last PLAY RECAP."""
    return [int(n) for n in re.findall(r"changed=(\d+)", output.split("PLAY RECAP")[-1])]
