"""``python -m autoevol.testing.fake_openai``: serve until SIGTERM/SIGINT (see :func:`main`).

:func:`serve_in_subprocess` runs this file by its path instead: then the folder is loaded as the
package ``autoevol.testing.fake_openai`` by hand, so the child imports the standard library only (not
autoevol's own ``__init__``, DSPy...) and listens within a fraction of a second even on a loaded machine.
"""

import importlib.util
import sys
from pathlib import Path

PACKAGE = "autoevol.testing.fake_openai"


def _load_package_without_parents() -> None:
    """Register this folder as ``PACKAGE`` without importing ``autoevol`` or ``autoevol.testing``."""
    folder = Path(__file__).resolve().parent
    spec = importlib.util.spec_from_file_location(PACKAGE, folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = package
    spec.loader.exec_module(package)


if __name__ == "__main__":
    if not __package__:  # run by path (serve_in_subprocess), not with -m
        _load_package_without_parents()
    importlib.import_module(f"{PACKAGE}.process").main()
