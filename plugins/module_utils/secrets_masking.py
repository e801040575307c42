# -*- coding: utf-8 -*-
# Copyright: mlops.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secrets of a tracking service's environment file, kept out of what the modules show.

A variable is secret when its key has PASSWORD, SECRET or TOKEN in it; the backend store
URI's password is secret too. The modules' diffs show secrets as ******** (or
********(changed), so that a changed secret still shows as a change), and every log line
or error message that reaches the operator (the journal tail, the output of the schema
script, pg_dump or psql) is scrubbed of the secret strings first.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from urllib.parse import unquote

from ansible_collections.mlops.platform.plugins.module_utils.tracking_service_env import (
    URI_KEY,
    parse_line,
    quote_value,
)

MASK = "********"
CHANGED_MASK = MASK + "(changed)"
SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN")


def is_secret_key(key):
    return any(word in key.upper() for word in SECRET_WORDS)


def _split_uri_password(uri):
    """(before, password, after) of a URI with a password in its netloc, or None."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return None
    netloc_end = len(rest)
    for char in "/?#":
        index = rest.find(char)
        if index != -1:
            netloc_end = min(netloc_end, index)
    userinfo, at, _hostport = rest[:netloc_end].rpartition("@")
    user, colon, password = userinfo.partition(":")
    if not at or not colon or not password:
        return None
    return scheme + sep + user + colon, password, rest[len(userinfo):]


def mask_uri(uri, mask=MASK):
    """uri with the password of its netloc replaced by mask."""
    parts = _split_uri_password(uri)
    if parts is None:
        return uri
    return parts[0] + mask + parts[2]


def uri_password(uri):
    parts = _split_uri_password(uri)
    return parts[1] if parts else None


def mask_value(key, value, mask=MASK):
    if key == URI_KEY:
        return mask_uri(value, mask)
    if is_secret_key(key) and value:
        return mask
    return value


def mask_env_text(text, changed=()):
    """An environment file's text with its secrets masked, line by line.

    Secrets of keys in changed show as ********(changed), so a diff shows that they changed.
    """
    if text is None:
        return ""
    lines = []
    for line in text.splitlines():
        parsed = parse_line(line)
        if parsed and (parsed[0] == URI_KEY or is_secret_key(parsed[0])):
            key, value = parsed
            masked = mask_value(key, value, CHANGED_MASK if key in changed else MASK)
            if masked != value:
                line = "%s=%s" % (key, quote_value(key, masked))
        lines.append(line)
    return "\n".join(lines) + ("\n" if lines else "")


def changed_secrets(before, after):
    """The secret keys of both sets of variables whose secret differs between them."""
    changed = set()
    for key in set(before) & set(after):
        if key == URI_KEY:
            if uri_password(before.get(key) or "") != uri_password(after.get(key) or ""):
                changed.add(key)
        elif is_secret_key(key) and before.get(key) != after.get(key):
            changed.add(key)
    return changed


def secret_strings(*value_sets):
    """The secret strings in sets of variables as they may show in logs and errors, longest first."""
    found = set()
    for key, value in [item for values in value_sets for item in values.items()]:
        if key == URI_KEY:
            password = uri_password(value or "")
            if password:
                found.update((password, unquote(password)))
        elif is_secret_key(key) and value:
            found.add(value)
    return sorted((s for s in found if s), key=len, reverse=True)


def scrub(text, secrets):
    """text with every known secret replaced by ********."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text
