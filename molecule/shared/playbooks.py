"""Run a playbook against the scenario's inventory from its verify tests, and read the recap."""

import json
import os
import re
import subprocess
import tempfile


def ansible_playbook(playbook, extra_vars=None, *args, timeout=1500, result_format=None):
    """ansible-playbook PLAYBOOK (a path or a collection playbook name) with extra_vars (in a
    0600 file, not on the command line) and further command line args; returns the
    CompletedProcess. result_format "json" keeps each message on one line for word checks."""
    inventory = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "inventory")
    command = ["ansible-playbook", "-i", inventory, str(playbook), *args]
    # Plain text: molecule forces colour on for its own runs.
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", PY_COLORS="0")
    if result_format:
        env["ANSIBLE_CALLBACK_RESULT_FORMAT"] = result_format
    vars_file = None
    if extra_vars is not None:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(extra_vars, f)
        vars_file = f.name
        os.chmod(vars_file, 0o600)
        command += ["-e", "@" + vars_file]
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    finally:
        if vars_file:
            os.unlink(vars_file)


def run_playbook(playbook, extra_vars=None, *args, **options):
    """ansible_playbook's (exit status, stdout and stderr)."""
    done = ansible_playbook(playbook, extra_vars, *args, **options)
    return done.returncode, done.stdout + done.stderr


def recap_changed(output):
    """The changed= count of every host in the last PLAY RECAP."""
    return [int(n) for n in re.findall(r"changed=(\d+)", output.split("PLAY RECAP")[-1])]
