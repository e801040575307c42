# -*- coding: utf-8 -*-
# Copyright: mlops.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller's cache directory for what the roles download or build once."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: controller_cache
author: mlops.platform maintainers (@mlops-platform)
short_description: The controller's cache directory of the platform's downloads and builds
version_added: 0.1.0
description:
  - Returns C(MLOPS_CACHE_DIR) when it is set and not empty, else C(XDG_CACHE_HOME)/mlops-platform, else
    C(~/.cache/mlops-platform), from the environment of the controller.
  - The default of C(mlflow_cache_dir) and C(jobs_cache_dir), and where mlops.platform.minio keeps the MinIO
    binaries it builds or downloads; the collection's C(hack/) scripts use the same place.
  - Takes no terms.
"""

EXAMPLES = r"""
- name: Where the wheelhouses are kept
  ansible.builtin.debug:
    msg: "{{ lookup('mlops.platform.controller_cache') }}/wheelhouse"
"""

RETURN = r"""
_raw:
  description: One absolute path.
  type: list
  elements: path
"""

import os

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase


def controller_cache(environ):
    """The cache directory for the environment mapping environ."""
    if environ.get("MLOPS_CACHE_DIR"):
        return environ["MLOPS_CACHE_DIR"]
    base = environ.get("XDG_CACHE_HOME") or os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mlops-platform")


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        if terms:
            raise AnsibleLookupError("controller_cache takes no terms (got %r)" % (terms,))
        return [controller_cache(os.environ)]
