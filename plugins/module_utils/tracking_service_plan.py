# -*- coding: utf-8 -*-
# Copyright: mlops.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The action plan of the tracking_service module: what it takes to bring a service to a state.

plan_actions compares what the host has (environment file, config directory, unit, venv
link, database schema) with what is wanted and returns the steps, in order, as (verb,
description) pairs: the descriptions are what the module reports (also in check mode), the
verbs what TrackingServiceHost.apply carries out. It only decides; it touches nothing.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.mlops.platform.plugins.module_utils.platform_model import unit_name


def plan_actions(state, name, env_path, current, desired_text=None, schema=None, backup_path=None, link=None):
    """The steps that bring a tracking service to state, as (verb, description) pairs, in order.

    current: dict(text=the env file's text or None, file_ok=its owner and mode are right,
    dir=ok, missing or insecure (the config directory), active=the unit runs or tries to,
    enabled=the unit starts at boot).
    schema: the schema check's result or None when it was not run; backup_path: where a
    backup before an upgrade goes. link: None, or dict(path=the symlink the unit runs
    MLflow through, current=its target or None, desired=the venv).
    """
    unit = unit_name(name)
    steps = []
    active = current["active"]
    if state == "absent":
        if active:
            steps.append(("stop", "stop %s" % unit))
        if current["enabled"]:
            steps.append(("disable", "disable %s" % unit))
        if current["text"] is not None:
            steps.append(("remove", "remove %s" % env_path))
        if link and link["current"] is not None:
            steps.append(("unlink", "remove %s" % link["path"]))
        return steps

    if current["dir"] != "ok":
        template = "create %s (root:root 0700)" if current["dir"] == "missing" else "set root:root 0700 on %s"
        steps.append(("mkdir", template % os.path.dirname(env_path)))
    config_changed = current["text"] != desired_text
    if config_changed:
        steps.append(("write", "write %s" % env_path))
    elif not current["file_ok"]:
        steps.append(("chmod", "set root:root 0600 on %s" % env_path))
    if link and link["current"] != link["desired"]:
        steps.append(("link", "point %s at %s" % (link["path"], link["desired"])))
        # The unit runs MLflow through the link: another venv is another server.
        config_changed = True

    if state == "stopped":
        if active:
            steps.append(("stop", "stop %s" % unit))
        if current["enabled"]:
            steps.append(("disable", "disable %s" % unit))
        return steps

    if state == "started" and not current["enabled"]:
        steps.append(("enable", "enable %s" % unit))
    if schema and schema.get("upgrade"):
        if active:
            steps.append(("stop", "stop %s" % unit))
        steps.append(("backup", "back up database to %s" % backup_path))
        steps.append(("upgrade", "upgrade schema %s -> %s" % (schema["current"], schema["head"])))
        if active or state == "started":
            steps.append(("start", "start %s" % unit))
    elif active and config_changed:
        steps.append(("restart", "restart %s" % unit))
    elif state == "started" and not active:
        steps.append(("start", "start %s" % unit))
    return steps
