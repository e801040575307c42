"""Make this checkout importable as ansible_collections.mlops.platform.

hack/bootstrap.sh links the repository into .build/collections/ansible_collections/
mlops/platform; ansible-test runs the same tests from its own copy, where the
collection root is already on the path.
"""

import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
COLLECTIONS = REPO / ".build" / "collections"
if (COLLECTIONS / "ansible_collections" / "mlops" / "platform").exists() and str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))
