"""The download cache: files fetched once from their public URL, kept under ``$LABFORMER_CACHE``."""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["cache_dir", "download"]


def cache_dir() -> Path:
    """``$LABFORMER_CACHE``, else ``$XDG_CACHE_HOME/labformer``, else ``~/.cache/labformer``."""
    if "LABFORMER_CACHE" in os.environ:
        return Path(os.environ["LABFORMER_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "labformer"


def download(url: str, path: Path, *, what: str, hint: str) -> Path:
    """Fetches ``url`` to ``path`` (atomically: a partial download never looks complete).

    Raises FileNotFoundError naming ``what`` and ``hint`` (how to supply the file) when offline.
    """
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            while chunk := response.read(1 << 20):
                out.write(chunk)
        os.replace(temporary, path)
    except (urllib.error.URLError, OSError) as error:
        Path(temporary).unlink(missing_ok=True)
        raise FileNotFoundError(
            f"{what} is not cached at {path} and could not be downloaded from {url} ({error}); {hint}"
        ) from None
    return path
