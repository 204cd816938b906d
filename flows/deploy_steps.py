"""The ``pull`` step of this project's deployments (``prefect.yaml``), for any Prefect worker.

A ``process`` worker starts each flow run in a temporary directory. Before Prefect loads the
deployment's entrypoint (``flows/pipeline.py:...``, a path relative to the repository), the
pull step :func:`enter_repository` changes the working directory of the flow-run process to
the checkout that the installed ``alphacode-pipeline`` package lives in (``pip install -e .``),
found from this module's own file, not from an environment variable: plain ``prefect deploy``
and ``prefect worker start`` need nothing set. Relative run directories in deployment
parameters (``out_dir``, ``run_dir``) therefore resolve against the repository root, as they
do for ``alphacode run`` started there; absolute ones are used as given.

The step also sets the offline defaults the CLI sets (``HF_HUB_OFFLINE=1`` and friends), unless
the worker's environment already has them. Limits: the package must be installed from a
checkout (editable); an installed copy without ``prefect.yaml`` and ``data/profiles`` beside it
is refused with a message naming the fix.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RUN_DEFAULTS = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_VERBOSITY": "error",
}


class NotACheckout(RuntimeError):
    """The installed package has no repository around it to run the deployments in."""


def repository_root(root: Path = REPO_ROOT) -> Path:
    """The checkout holding the installed package; refused if it is not one."""
    missing = [
        name for name in ("prefect.yaml", "data/profiles", "flows/pipeline.py") if not (root / name).exists()
    ]
    if missing:
        raise NotACheckout(
            f"{root} is not an alphacode-pipeline checkout (no {', '.join(missing)}); install the "
            "project editable from its repository (`pip install -e .` there) on the worker's machine"
        )
    return root


def enter_repository() -> dict[str, str]:
    """Prefect pull step: run the flow in the repository root. Returns ``{"directory": root}``."""
    root = repository_root()
    os.chdir(root)
    for key, value in RUN_DEFAULTS.items():
        os.environ.setdefault(key, value)
    return {"directory": str(root)}
