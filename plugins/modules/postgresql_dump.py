#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mlops.platform contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: postgresql_dump
short_description: Keep a plain pg_dump of a database in a file, replaced only when the data changed
version_added: 0.1.0
author: mlops.platform maintainers (@mlops-platform)
description:
  - Dumps O(database) with C(pg_dump) (plain SQL) into a temporary file beside O(path), created 0600 before
    C(pg_dump) writes to it, and compares it with O(path). The new dump replaces O(path) atomically only when O(path)
    is missing or the data changed; the temporary file is removed in every case.
  - The comparison ignores the C(\restrict) and C(\unrestrict) lines of the dump (psql's guard against commands in
    dumped data), as they carry a random key, so two dumps of unchanged data differ only there.
  - A failed C(pg_dump) fails the module with its error output and leaves O(path) as it was.
  - Runs on the database server, as the operating system user the task becomes (usually C(postgres)), and connects
    to the server's Unix socket with peer authentication, so there is no password. That user owns O(path), and it
    needs to be able to write in the directory of O(path).
  - With O(login_host), dumps a server elsewhere (a managed database) over TCP as O(login_user), the password and the
    TLS settings given to C(pg_dump) through its environment, never its command line.
attributes:
  check_mode:
    support: full
    description:
      - Dumps the database into a temporary file to compare it (read-only on the database), removes that file and
        reports whether O(path) would be replaced; changes no file.
      - When the directory of O(path) does not exist yet, reports that the dump would be created without dumping.
  diff_mode:
    support: full
    description: Before and after describe O(path) (size, mode, owner), never the dump's content.
options:
  database:
    description: The database to dump.
    type: str
    required: true
  path:
    description:
      - The dump file on the database host. Its directory has to exist.
    type: path
    required: true
  login_unix_socket:
    description: Directory of the server's Unix socket.
    type: path
    default: /var/run/postgresql
  port:
    description: The server's port (it names the socket file in O(login_unix_socket)).
    type: int
    default: 5432
  login_host:
    description: A server reached over TCP instead of the Unix socket.
    type: str
  login_user:
    description: The role to dump as on O(login_host); it must be able to read the whole database (its owner).
    type: str
  login_password:
    description: The password of O(login_user).
    type: str
  ssl_mode:
    description: libpq's C(sslmode) towards O(login_host).
    type: str
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
    default: prefer
  ca_cert:
    description: The CA file the server's certificate is checked with (libpq's C(sslrootcert)).
    type: path
  mode:
    description:
      - Permissions of O(path), in octal (V('0600')) or symbolic form, as for M(ansible.builtin.file).
      - The owner is always the user the module runs as.
    type: raw
    default: '0600'
requirements:
  - pg_dump (the postgresql-client package) of the server's major version or newer, on the database host
seealso:
  - module: community.postgresql.postgresql_db
"""

EXAMPLES = r"""
- name: Dump a tracking service's database into the backup directory
  mlops.platform.postgresql_dump:
    database: mlflow_team_a
    path: /var/backups/mlops/team-a/database/mlflow_team_a.sql
  become: true
  become_user: postgres

- name: Dump from the second cluster, readable by the postgres group
  mlops.platform.postgresql_dump:
    database: reports
    path: /srv/dumps/reports.sql
    port: 5433
    mode: '0640'
  become: true
  become_user: postgres
"""

RETURN = r"""
path:
  description: The dump file.
  returned: always
  type: str
  sample: /var/backups/mlops/team-a/database/mlflow_team_a.sql
actions:
  description: What the module did (would do, in check mode), in order; empty when nothing changed.
  returned: always
  type: list
  elements: str
  sample:
    - replace /var/backups/mlops/team-a/database/mlflow_team_a.sql with a new dump of database mlflow_team_a
"""

import os
import pwd
import re
import stat
import tempfile
from itertools import zip_longest

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

# psql's guard lines around a plain dump: "\restrict <random key>" and "\unrestrict <random key>".
# Inside COPY data a backslash is written doubled, so a data line never matches.
GUARD_LINE = re.compile(br"^\\(un)?restrict ")


def content_lines(lines):
    """The lines of a dump (bytes) that hold its data: all but psql's guard lines."""
    return (line for line in lines if not GUARD_LINE.match(line))


def same_content(lines_a, lines_b):
    """Whether two dumps (iterables of byte lines) hold the same data."""
    missing = object()
    for line_a, line_b in zip_longest(content_lines(lines_a), content_lines(lines_b), fillvalue=missing):
        if line_a != line_b:
            return False
    return True


def same_dump(path_a, path_b):
    with open(path_a, "rb") as file_a:
        with open(path_b, "rb") as file_b:
            return same_content(file_a, file_b)


def conninfo_value(value):
    """value quoted for a libpq connection string: a database name can hold spaces, quotes or '='."""
    return "'%s'" % value.replace("\\", "\\\\").replace("'", "\\'")


def describe(what, size, mode, owner):
    """A short description of the dump file for the diff; never its content."""
    return "%s: %d bytes, mode %s, owner %s\n" % (what, size, mode, owner)


def owner_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def current_state(module, path):
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        module.fail_json(msg="cannot read %s: %s" % (path, to_native(exc)))
    if not stat.S_ISREG(found.st_mode):
        module.fail_json(msg="%s exists and is not a regular file: not replacing it with a dump" % path)
    return found


def dump(module, database, target_fd, target):
    """Run pg_dump of database into target (already created 0600); fail with its error output."""
    pg_dump = module.get_bin_path("pg_dump")
    if not pg_dump:
        module.fail_json(msg="pg_dump was not found on this host: install postgresql-client (the package that holds "
                             "pg_dump) of the server's major version")
    params = module.params
    # --no-password: peer authentication on the socket, or the password in the environment;
    # pg_dump never waits for one.
    argv = [pg_dump, "--no-password", "--host", params["login_host"] or params["login_unix_socket"],
            "--port", str(params["port"]), "--file", target, "--dbname", "dbname=%s" % conninfo_value(database)]
    environment = {}
    if params["login_host"]:
        argv += ["--username", params["login_user"]] if params["login_user"] else []
        environment = {"PGSSLMODE": params["ssl_mode"]}
        if params["login_password"]:
            environment["PGPASSWORD"] = params["login_password"]
        if params["ca_cert"]:
            environment["PGSSLROOTCERT"] = params["ca_cert"]
    rc, _out, err = module.run_command(argv, environ_update=environment)
    if rc != 0:
        module.fail_json(msg="pg_dump of database %s failed (exit status %d): %s"
                             % (database, rc, err.strip() or "no error output"), rc=rc)
    os.fsync(target_fd)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            database=dict(type="str", required=True),
            path=dict(type="path", required=True),
            login_unix_socket=dict(type="path", default="/var/run/postgresql"),
            port=dict(type="int", default=5432),
            mode=dict(type="raw", default="0600"),
            login_host=dict(type="str"),
            login_user=dict(type="str"),
            login_password=dict(type="str", no_log=True),
            ssl_mode=dict(type="str", default="prefer",
                          choices=["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]),
            ca_cert=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    database, path = module.params["database"], module.params["path"]
    if not os.path.isabs(module.params["login_unix_socket"]):
        module.fail_json(msg="login_unix_socket must be an absolute directory path, not %s"
                             % module.params["login_unix_socket"])
    directory = os.path.dirname(path) or "."
    user = owner_name(os.geteuid())
    file_args = dict(path=path, mode=module.params["mode"], owner=user, group=None, secontext=None, attributes=None)

    before = current_state(module, path)
    if not os.path.isdir(directory):
        if not module.check_mode:
            module.fail_json(msg="directory %s does not exist: create it before dumping database %s into it"
                                 % (directory, database))
        mode = module.params["mode"]
        after = "new dump of database %s, mode %s, owner %s (directory %s does not exist yet)\n" % (
            database, "%04o" % mode if isinstance(mode, int) else mode, user, directory)
        module.exit_json(changed=True, path=path, actions=["dump database %s to %s" % (database, path)],
                         diff=dict(before="absent\n", after=after))

    actions = []
    temporary = None
    try:
        try:
            # mkstemp creates the file 0600, owned by this user, before pg_dump writes into it.
            fd, temporary = tempfile.mkstemp(dir=directory, prefix=".%s." % os.path.basename(path), suffix=".new")
        except OSError as exc:
            module.fail_json(msg="cannot create a temporary file in %s: %s" % (directory, to_native(exc)))
        try:
            dump(module, database, fd, temporary)
        finally:
            os.close(fd)
        try:
            replace = before is None or not same_dump(temporary, path)
        except (IOError, OSError) as exc:
            module.fail_json(msg="cannot compare the new dump with %s: %s" % (path, to_native(exc)))
        if replace:
            actions.append("%s %s with a new dump of database %s" % (
                "create" if before is None else "replace", path, database))
            if not module.check_mode:
                os.replace(temporary, path)
                temporary = None

        # Mode and owner of the file as it is (or, in check mode, as the new dump would be).
        target = temporary if replace and module.check_mode else path
        attributes_diff = {}
        if module.set_fs_attributes_if_different(dict(file_args, path=target), False, diff=attributes_diff):
            for key, value in sorted(attributes_diff.get("after", {}).items()):
                actions.append("set %s %s on %s" % (key, owner_name(value) if key == "owner" else value, path))
        final = os.stat(target)
    finally:
        if temporary is not None and os.path.lexists(temporary):
            os.unlink(temporary)

    # In check mode the attributes are not set: the diff shows them as they would be.
    wanted = attributes_diff.get("after", {})
    after = describe("new dump of database %s" % database if replace else "dump", final.st_size,
                     wanted.get("mode", "%04o" % stat.S_IMODE(final.st_mode)),
                     owner_name(wanted.get("owner", final.st_uid)))
    module.exit_json(
        changed=bool(actions), path=path, actions=actions,
        diff=dict(before="absent\n" if before is None else describe(
            "dump", before.st_size, "%04o" % stat.S_IMODE(before.st_mode), owner_name(before.st_uid)), after=after),
    )


if __name__ == "__main__":
    main()
