"""Test images only (hack/build-images.sh puts this in root's user site-packages).

Every Ansible task runs its module from a zip archive (AnsiballZ), and Python compiles
what it imports from a zip on every run: about a third of a test host's CPU time per
task went to compiling the same module_utils again. This keeps the compiled code of each
source text met in a zip archive, keyed by its path inside the archive, its text and the
interpreter's bytecode version, in a directory only root can read, so the next task
loads it instead. The code is the same either way. Virtual environments (the platform's
services) do not read root's user site-packages.
"""

import hashlib
import importlib.util
import marshal
import os
import zipimport

CACHE = "/var/cache/mlops-test-zipimport"

_compile_source = getattr(zipimport, "_compile_source", None)


def _cached_compile_source(pathname, source):
    inner = pathname.rpartition(".zip" + os.sep)[2]  # the archive's own path differs per task
    key = hashlib.sha256(importlib.util.MAGIC_NUMBER + inner.encode() + b"\0" + source).hexdigest()
    path = os.path.join(CACHE, key)
    try:
        with open(path, "rb") as cached:
            return marshal.loads(cached.read())
    except (OSError, ValueError, EOFError, TypeError):
        pass
    code = _compile_source(pathname, source)
    try:
        os.makedirs(CACHE, mode=0o700, exist_ok=True)
        partial = "%s.%d" % (path, os.getpid())
        with open(partial, "wb") as out:
            out.write(marshal.dumps(code))
        os.replace(partial, path)  # whole or absent for a task running beside this one
    except OSError:
        pass
    return code


if _compile_source is not None and os.geteuid() == 0:
    zipimport._compile_source = _cached_compile_source  # pylint: disable=protected-access
