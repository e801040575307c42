# -*- coding: utf-8 -*-
# Copyright: mlops.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The inventory arguments of the platform model's filters (tracking_services,
    # platform_endpoints).
    DOCUMENTATION = r"""
options:
  groups:
    description: C(groups).
    type: dict
    required: true
  local:
    description: The host asking, usually C(inventory_hostname); services on it are reached on loopback.
    type: str
"""
