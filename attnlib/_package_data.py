"""The files attnlib ships as package data (``attnlib/_resources/``), each checked by its sha256.

``attnlib/_resources/README.md`` says what each file is, where it comes from and under
which licence. Not public API: use :func:`attnlib.data.pydoc_topics`,
:func:`attnlib.pretrain_bert.checkpoint_path` and :func:`attnlib.mixers.recall_sweep_results`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Dict, List

__all__: List[str] = []

RESOURCES = Path(__file__).resolve().parent / "_resources"

#: The sha256 of every file in ``_resources/`` (a test checks that none is left out).
SHA256: Dict[str, str] = {
    "pydoc_topics.json.xz": "eea0e776a7f833422fbc50387077107c8803325a61c9bb8ed190614ec7bccb74",
    "bert_char_pydoc.safetensors": "6ad0566a45d2f93c7ba041a9dad5f38c2c492abce86e062cdfadd8ffa359de04",
    "recall_sweep.json": "f12cc65c9a65c4faf2de16e2e8576316c5b1b6a32009621e60e31e35bfa8a60e",
}

_verified: Dict[str, Path] = {}


def resource_path(name: str) -> Path:
    """The path of the package-data file ``name``, after checking its sha256.

    Raises:
        ValueError: ``name`` is not one of attnlib's files.
        FileNotFoundError: the file is missing from the installation.
        RuntimeError: the file's sha256 is not the pinned one (a damaged installation).
    """
    if name not in SHA256:
        raise ValueError(f"name must be one of {sorted(SHA256)} (got {name!r})")
    if name in _verified:
        return _verified[name]
    path = RESOURCES / name
    if not path.is_file():
        raise FileNotFoundError(f"attnlib's package data {path} is missing: reinstall attnlib")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SHA256[name]:
        raise RuntimeError(f"{path} has sha256 {digest}, expected {SHA256[name]}: reinstall attnlib")
    _verified[name] = path
    return path
