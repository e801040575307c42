# -*- coding: utf-8 -*-
# Copyright: mlops.platform maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: drift_report
type: aggregate
short_description: Write what a playbook run changed, or would change, as a JSON drift report
description:
  - Meant for C(mlops.platform.reconcile). Every task result that reports C(changed) becomes one entry of the
    report with the host, the resource, what the playbook expects and what the host has. In check mode (report
    mode) the entries are the drift; without check mode (apply mode) they are what the run fixed.
  - Handlers are left out (a reload is a consequence of a change, not a resource that drifted). Failed and
    unreachable hosts are listed under C(errors), so a report never looks clean when the run could not look.
  - What a task hides with C(no_log) stays hidden; C(expected) and C(found) then say so.
  - For a file, C(expected) and C(found) hold the lines that differ (those only the playbook's version has, those
    only the host's has); for other resources the module's diff, or the unit state for a systemd service.
  - The file is rewritten after every change, so that the run's last play can read it, and once more with the
    totals when the run ends (C(complete) true). Mode 0600, replaced atomically.
  - The path is set by the environment only (C(MLOPS_DRIFT_REPORT)), so that C(mlops.platform.reconcile) finds
    the same file.
  - Needs enabling, for example C(ANSIBLE_CALLBACKS_ENABLED=mlops.platform.drift_report).
options:
  report_path:
    description: Where the JSON report is written.
    type: path
    default: mlops-drift-report.json
    env:
      - name: MLOPS_DRIFT_REPORT
"""

import datetime
import difflib
import json
import os
import tempfile

from ansible import context
from ansible.plugins.callback import CallbackBase

# A found or expected value longer than this is cut (templates return whole files).
MAX_TEXT = 4000
HIDDEN = "(hidden: the task sets no_log)"
# Result keys that name the resource a task manages, most specific first.
NAME_KEYS = ("dest", "path", "name", "bucket", "user", "db", "unit")


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _cut(value):
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return value[:MAX_TEXT] + "\n... (%d more characters)" % (len(value) - MAX_TEXT)
    return value


def _text_or_value(after, before):
    """Texts (files) become the lines only the wanted or only the found side has, so that a
    hand edit in a long file shows; other values stay whole."""
    if isinstance(after, str) and isinstance(before, str):
        lines = list(difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0))
        expected = "\n".join(line[1:] for line in lines if line.startswith("+") and not line.startswith("+++"))
        found = "\n".join(line[1:] for line in lines if line.startswith("-") and not line.startswith("---"))
        return _cut(expected), _cut(found)
    return _cut(after), _cut(before)


def _diffs(result):
    diff = result.get("diff")
    return diff if isinstance(diff, list) else [diff] if isinstance(diff, dict) else []


def _resource(action, result, label, task_name):
    """A readable name of the managed resource: 'template /etc/nginx/...', 's3_bucket mlflow-team-a'."""
    short = action.rsplit(".", 1)[-1]
    # What the module says it managed, then the file its diff is about (before_header is
    # the destination; after_header may be a temporary source), then what it was asked.
    candidates = [result.get(key) for key in NAME_KEYS]
    for entry in _diffs(result):
        candidates += [entry.get("before_header"), entry.get("after_header")]
    arguments = result.get("invocation", {}).get("module_args", {})
    candidates += [arguments.get(key) for key in NAME_KEYS]
    for value in candidates:
        if isinstance(value, str) and value and not value.startswith(("(", "/root/.ansible/tmp")):
            return "%s %s" % (short, value)
    if label not in (None, ""):
        return "%s %s" % (short, label)
    # A result that names nothing (no_log hides it all): the task's name says what it manages.
    return "%s (%s)" % (short, task_name)


def _expected_found(result):
    """What the playbook wants and what the host had, from the result's diff or status."""
    if "censored" in result:
        return HIDDEN, HIDDEN
    # A diff whose two sides are equal (a stopped service with its settings intact)
    # says nothing; the module's actions or state do.
    diffs = [d for d in _diffs(result) if ("before" in d or "after" in d) and d.get("before") != d.get("after")]
    if diffs:
        pairs = [_text_or_value(d.get("after"), d.get("before")) for d in diffs]
        if len(pairs) == 1:
            return pairs[0]
        return [expected for expected, _found in pairs], [found for _expected, found in pairs]
    status = result.get("status")
    if isinstance(status, dict) and "ActiveState" in status:
        # systemd: the unit's state before the task, the state the task asks for.
        found = {key: status.get(key) for key in ("ActiveState", "SubState", "UnitFileState") if key in status}
        expected = {key: result[key] for key in ("state", "enabled") if key in result}
        return expected, found
    expected = {key: result[key] for key in ("state", "actions", "msg") if key in result}
    return expected or "(the task reports a change and no diff)", "(not reported by the module)"


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "mlops.platform.drift_report"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None):
        super().__init__(display=display)
        self._report = None
        self._path = None

    def _write(self):
        directory = os.path.dirname(os.path.abspath(self._path))
        os.makedirs(directory, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=".drift-report.")
        try:
            with os.fdopen(handle, "w") as stream:
                json.dump(self._report, stream, indent=2, sort_keys=False, default=str)
                stream.write("\n")
            os.chmod(temporary, 0o600)
            os.replace(temporary, self._path)
        except BaseException:
            os.unlink(temporary)
            raise

    def v2_playbook_on_start(self, playbook):
        self._path = self.get_option("report_path")
        check = bool(context.CLIARGS.get("check"))
        self._report = {
            "mode": "report" if check else "apply",
            "playbook": os.path.basename(playbook._file_name),
            "started": _now(),
            "finished": None,
            "complete": False,
            "drift_found": False,
            "drift": [],
            "errors": [],
            "hosts": {},
        }
        self._write()

    def _add_change(self, result, label=None):
        task = result._task
        if task is None or getattr(task, "implicit", False) or type(task).__name__ == "Handler":
            return
        data = result._result
        action = task.action
        expected, found = _expected_found(data)
        entry = {
            "host": result._host.get_name(),
            "resource": _resource(action, data, label, result.task_name),
            "expected": expected,
            "found": found,
            "task": result.task_name,
            "action": action,
        }
        delegated = data.get("_ansible_delegated_vars", {}).get("ansible_host")
        if delegated:
            entry["delegated_to"] = delegated
        self._report["drift"].append(entry)
        self._report["drift_found"] = True
        self._write()

    def _add_error(self, result, kind):
        data = result._result
        self._report["errors"].append({
            "host": result._host.get_name(),
            "task": result.task_name,
            "kind": kind,
            "msg": HIDDEN if "censored" in data else _cut(str(data.get("msg", ""))),
        })
        self._write()

    def v2_runner_on_ok(self, result):
        # A loop's items were reported one by one already.
        if result._result.get("changed") and "results" not in result._result:
            self._add_change(result)

    def v2_runner_item_on_ok(self, result):
        if result._result.get("changed"):
            # An item of a no_log loop may hold a secret (its label is the item unless the
            # task gives one): the task's name names the resource instead.
            hidden = result._result.get("_ansible_no_log") or "censored" in result._result
            label = None if hidden else result._result.get("_ansible_item_label", result._result.get("item"))
            self._add_change(result, label)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        # The reconcile playbook's own verdict (it fails on drift) is not an error.
        if not ignore_errors and not result._task.vars.get("__drift_report_verdict"):
            self._add_error(result, "failed")

    def v2_runner_on_unreachable(self, result):
        self._add_error(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        if self._report is None:
            return
        for host in sorted(stats.processed):
            summary = stats.summarize(host)
            self._report["hosts"][host] = {key: summary.get(key, 0)
                                           for key in ("ok", "changed", "failures", "unreachable", "skipped")}
        self._report["finished"] = _now()
        self._report["complete"] = True
        self._write()
