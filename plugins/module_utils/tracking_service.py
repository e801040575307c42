# -*- coding: utf-8 -*-
# Copyright: mlops.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The errors of the tracking service modules: MLflow tracking services on this host.

A tracking service NAME is the systemd instance mlflow@NAME.service of the template unit
the mlflow role installs, configured only by the environment file CONFIG_DIR/NAME.env.
What the modules share lives in one module per concern, each importing the errors from here:

- tracking_service_env: validation of the options, rendering and parsing of the environment file;
- secrets_masking: masking secrets in diffs and scrubbing them from logs and errors;
- tracking_service_plan: the action plan;
- tracking_service_schema: the schema script run by the venv's python, backup names, libpq settings;
- tracking_service_host: the host client (systemctl, the schema check and upgrade, database
  backups, the health wait and the journal tail).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class TrackingServiceError(Exception):
    """A failure already worded for the operator.

    journal: the last lines of the unit's journal, secrets masked, when the service did not
    become healthy ([] when there are none). actions: descriptions of the steps carried out
    before the failure that the module has not counted yet (a rollback's steps; [] when none).
    """

    def __init__(self, message, journal=None, actions=None):
        super(TrackingServiceError, self).__init__(message)
        self.journal = list(journal) if journal else []
        self.actions = list(actions) if actions else []


class UnknownSchemaError(TrackingServiceError):
    """The backend store has a schema revision the venv's MLflow does not know."""
