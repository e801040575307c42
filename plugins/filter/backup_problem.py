# -*- coding: utf-8 -*-
# Copyright: mlops.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whether a scheduled backup needs making now, from the status its program wrote."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: backup_problem
author: mlops.platform maintainers (@mlops-platform)
short_description: Why a scheduled backup must be made now, or an empty string
version_added: 0.1.0
description:
  - Reads the C(status.json) a backup program of the platform writes at the end of every run (C(result), C(finished),
    C(last_success), C(errors)) and returns why a backup is needed now, or C('') when the last one is good and
    recent.
  - Needed when there is no status (no backup made yet), when the last run failed, or when the last good run
    finished more than O(max_age_hours) before O(now).
options:
  _input:
    description: The parsed C(status.json), or C(None) when there is none.
    type: raw
    required: true
  max_age_hours:
    description: How old the last good backup may be.
    type: int
    required: true
  now:
    description: The current time, seconds since the epoch (C(now(utc=true\\).timestamp(\\))).
    type: float
    required: true
  setting:
    description: The variable that sets O(max_age_hours), named in the reason a backup is stale.
    type: str
    default: the age limit
"""

EXAMPLES = r"""
- name: Back up now when needed
  ansible.builtin.debug:
    msg: >-
      {{ status | mlops.platform.backup_problem(26, now(utc=true).timestamp(), 'postgresql_backup_max_age_hours') }}
"""

RETURN = r"""
_value:
  description: The reason, one sentence without a final period, or an empty string.
  type: str
"""

import datetime


def _seconds(text):
    moment = datetime.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def backup_problem(status, max_age_hours, now, setting="the age limit"):
    if not isinstance(status, dict) or not status.get("finished"):
        return "no backup has been made yet"
    if status.get("result") != "ok":
        errors = "; ".join(str(error) for error in status.get("errors") or []) or "no reason recorded"
        return "the last backup, at %s, failed: %s" % (status["finished"], errors)
    last = status.get("last_success") or status["finished"]
    try:
        age_hours = (float(now) - _seconds(last)) / 3600
    except (TypeError, ValueError):
        return "the status gives no readable time of the last good backup (%r)" % (last,)
    if age_hours > max_age_hours:
        return "the last good backup, at %s, is %d hours old, more than %s (%d)" % (
            last, age_hours, setting, max_age_hours)
    return ""


class FilterModule(object):
    def filters(self):
        return {"backup_problem": backup_problem}
