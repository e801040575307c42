# -*- coding: utf-8 -*-
# Copyright: mlops.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whether a value is a valid pg_hba.conf client address."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: hba_address
author: mlops.platform maintainers (@mlops-platform)
short_description: Whether a value is a client address pg_hba.conf accepts
version_added: 0.1.0
description:
  - True for a CIDR network whose host bits are zero (C(10.0.0.0/24), C(10.0.0.5/32), C(fd00::/64)) or for a DNS
    host name (C(db-client.example.com)).
  - False for anything else, including a bare IP address without a prefix length, a prefix that is too long, an
    address with host bits set such as C(10.0.0.1/24), and the pg_hba keywords C(all), C(samehost) and C(samenet),
    which would let in every address or whole subnets.
options:
  _input:
    description: The address to test.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Refuse a bad client address
  ansible.builtin.assert:
    that: "'10.0.0.0/24' is mlops.platform.hba_address"
"""

RETURN = r"""
_value:
  description: Whether the value is a CIDR network or a host name.
  type: bool
"""

import ipaddress
import re

from ansible.module_utils.six import string_types

# RFC 1123 labels; the last label must not be all digits, so "10.0.0.300" is not
# mistaken for a host name.
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOSTNAME = re.compile(r"^(?=.{1,253}$)(%s\.)*(?!-)(?=.*[A-Za-z])[A-Za-z0-9-]{1,63}(?<!-)$" % _LABEL)


# Words pg_hba.conf reads as address keywords rather than host names.
_KEYWORDS = frozenset(("all", "samehost", "samenet"))


def hba_address(value):
    if not isinstance(value, string_types) or not value:
        return False
    if value.lower() in _KEYWORDS:
        return False
    if "/" in value:
        try:
            ipaddress.ip_network(value, strict=True)
        except ValueError:
            return False
        return True
    if re.match(r"^[0-9.]+$", value) or ":" in value:
        # An address without a prefix length: pg_hba needs one (use /32 or /128).
        return False
    return bool(_HOSTNAME.match(value))


class TestModule(object):
    def tests(self):
        return {"hba_address": hba_address}
