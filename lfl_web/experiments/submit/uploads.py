"""The data files users upload with a new experiment, kept on the server's disk.

Uploads are stored under a generated name: the uploaded name is never used on disk (it could hold
`../` or clash with another user's file); only its extension is kept, because the engine reads
`.csv` and `.npz` files by kind.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from django.conf import settings

UPLOAD_EXTENSIONS = (".csv", ".npz")
MAX_UPLOAD_BYTES = 200 * 1024 * 1024  # larger tables belong in a data_root the server already has


def upload_dir() -> Path:
    """Where uploads live: settings.LFL_UPLOAD_DIR, else VAR_DIR/uploads."""
    return Path(getattr(settings, "LFL_UPLOAD_DIR", None) or Path(settings.VAR_DIR) / "uploads")


def store_upload(uploaded) -> Path:
    """Write an UploadedFile to the upload folder under a fresh random name; returns its path."""
    folder = upload_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4().hex}{Path(uploaded.name).suffix.lower()}"
    with path.open("xb") as out:
        for chunk in uploaded.chunks():
            out.write(chunk)
    return path


def is_upload(path: str | Path | None) -> bool:
    """Whether `path` is a file `store_upload` stored (and so may be deleted)."""
    if not path:
        return False
    return Path(path).resolve().parent == upload_dir().resolve()


def remove_upload(path: str | Path | None) -> None:
    """Delete a stored upload; anything outside the upload folder is left alone."""
    if is_upload(path):
        Path(path).unlink(missing_ok=True)
