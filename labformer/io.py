"""The project's file I/O: atomic writes, JSON, and safetensors read without running code.

Every file is written to a temporary name in its directory and renamed, so a kill at any moment
leaves the previous version intact. Nothing here runs at import (no global state is changed).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

__all__ = ["atomic_write", "read_json", "read_metadata", "read_tensors", "write_json", "write_tensors"]


def _umask() -> int:
    """The process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Calls ``write(temporary_path)``, then renames it onto ``path`` (same directory, so atomic)."""
    path = Path(path)
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(handle)
    except OSError as error:
        raise OSError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        write(Path(temporary))
        with open(temporary, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise OSError(f"cannot write {path}: {error.strerror or error}; the previous version is intact") from None
        raise


def write_json(path: Path, data: Any) -> None:
    """``data`` as indented JSON, atomically."""
    atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2) + "\n"))


def read_json(path: Path, what: str) -> Any:
    """The JSON in ``path``; ``what`` names the file in the errors (missing: FileNotFoundError, bad: ValueError)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{what} {path} is not valid JSON ({error})") from None


def write_tensors(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str] | None = None) -> None:
    """``tensors`` (moved to the CPU; tied storages stored once each) and string ``metadata`` as safetensors."""
    seen: set[int] = set()
    copies = {}
    for name, tensor in tensors.items():
        tensor = tensor.detach().cpu().contiguous()
        if tensor.data_ptr() in seen:  # tied weights: safetensors stores each storage once
            tensor = tensor.clone()
        seen.add(tensor.data_ptr())
        copies[name] = tensor
    tensors = copies
    atomic_write(path, lambda p: save_file(tensors, str(p), metadata=metadata))


def read_tensors(path: Path, what: str) -> dict[str, Tensor]:
    """Loads a safetensors file (pure data: no code can run), with a clear error if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found")
    with open(path, "rb") as f:
        head = f.read(9)
    # safetensors: an 8-byte header length, then the JSON header; its first byte may well be 0x80
    is_safetensors = head[8:9] == b"{"
    if not is_safetensors and (head[:1] == b"\x80" or head[:2] == b"PK"):  # pickle protocol 2+ / zip (torch.save)
        raise ValueError(
            f"{what} {path} is a pickle or torch.save file; labformer only loads safetensors "
            "(pickles can run code and are refused)"
        )
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise ValueError(f"{what} {path} is truncated or corrupt ({error})") from None


def read_metadata(path: Path, what: str) -> dict[str, str]:
    """The string metadata of a safetensors file (read after :func:`read_tensors` validated it)."""
    try:
        with safe_open(str(path), "pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{what} {path} is truncated or corrupt ({error})") from None
