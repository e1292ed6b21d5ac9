"""labformer.io: atomic writes keep the previous version, JSON and safetensors round-trip, no import side effects."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
import torch

from labformer import io


def test_json_round_trip_and_clear_errors(tmp_path):
    io.write_json(tmp_path / "a.json", {"x": [1, 2.5, "é"]})
    assert io.read_json(tmp_path / "a.json", "thing") == {"x": [1, 2.5, "é"]}
    with pytest.raises(FileNotFoundError, match=r"thing .*missing.json not found"):
        io.read_json(tmp_path / "missing.json", "thing")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(ValueError, match=r"thing .*bad.json is not valid JSON"):
        io.read_json(tmp_path / "bad.json", "thing")


def test_a_failed_write_keeps_the_previous_version_and_no_temporary_file(tmp_path):
    path = tmp_path / "file.txt"
    io.atomic_write(path, lambda p: p.write_text("first"))

    def fail(p):
        p.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left on device; the previous version is intact"):
        io.atomic_write(path, fail)
    assert path.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_written_files_follow_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        io.atomic_write(tmp_path / "f", lambda p: p.write_text("x"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o640


def test_tensors_round_trip_with_tied_storage_and_metadata(tmp_path):
    weight = torch.randn(4, 3)
    io.write_tensors(tmp_path / "t.safetensors", {"a": weight, "b": weight, "c": torch.arange(5)}, {"k": "v"})
    loaded = io.read_tensors(tmp_path / "t.safetensors", "weights")
    assert torch.equal(loaded["a"], weight) and torch.equal(loaded["b"], weight)
    assert torch.equal(loaded["c"], torch.arange(5))
    assert io.read_metadata(tmp_path / "t.safetensors", "weights") == {"k": "v"}


def test_importing_changes_no_process_state():
    code = "import os; os.umask(0o077); import labformer.io; print(oct(os.umask(0)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "0o77"


@pytest.mark.parametrize("padding", range(0, 600, 7))
def test_safetensors_whose_header_length_looks_like_a_pickle_still_load(tmp_path, padding):
    """The header length is the file's first 8 bytes; 0x80 0x05 there is also how a pickle starts."""
    path = tmp_path / "t.safetensors"
    io.write_tensors(path, {"w": torch.arange(3.0)}, {"pad": "x" * padding})
    assert torch.equal(io.read_tensors(path, "weights")["w"], torch.arange(3.0))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_pickles_are_refused_whatever_their_protocol(tmp_path, protocol):
    import pickle

    path = tmp_path / "t.safetensors"
    path.write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=protocol))
    with pytest.raises(ValueError, match="pickle or torch.save file"):
        io.read_tensors(path, "weights")
