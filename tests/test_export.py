"""``labformer export RUN_DIR --onnx FILE``: the ONNX file run by ONNX Runtime gives the model's logits and
attention for any batch size; bad runs and missing packages are one clear line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import needed_module

from labformer import io, runs
from labformer.attention import record_attention
from labformer.cli import main
from labformer.models.vit import ViT, ViTConfig

ort = needed_module("onnxruntime")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A run directory holding a small untrained ViT (export does not care how good it is)."""
    run_dir = tmp_path_factory.mktemp("export") / "run"
    run_dir.mkdir()
    torch.manual_seed(0)
    config = ViTConfig(image_size=28, patch_size=7, dim=32, depth=2, num_heads=4, mlp_dim=64)
    io.write_tensors(run_dir / runs.MODEL, ViT(config).state_dict())
    record = {"kind": "vit", "model": config.to_dict(), "train": {"dataset": "mnist"}, "classes": list("0123456789")}
    io.write_json(run_dir / runs.CONFIG, {**record, "mean": [0.1307], "std": [0.3081]})
    return run_dir


@pytest.mark.parametrize("attention", [False, True])
def test_the_onnx_file_computes_the_models_outputs_for_any_batch(tiny_run, tmp_path, capsys, attention):
    target = tmp_path / "vit.onnx"
    assert main(["export", str(tiny_run), "--onnx", str(target), *(["--attention"] if attention else [])]) == 0
    printed = capsys.readouterr().out
    assert "max abs difference: logits" in printed and str(target) in printed
    assert [p.name for p in tmp_path.iterdir()] == ["vit.onnx"]  # one self-contained file, no leftovers
    model = runs.load_run(tiny_run)[0]
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        images = torch.randn(batch, 1, 28, 28)
        outputs = session.run(None, {"images": images.numpy()})
        with torch.no_grad(), record_attention(model) as maps:
            logits = model(images)
        np.testing.assert_allclose(outputs[0], logits.numpy(), atol=1e-4)
        if attention:
            assert outputs[1].shape == (batch, 2, 4, 17, 17)
            np.testing.assert_allclose(outputs[1], torch.stack(maps, 1).numpy(), atol=1e-5)
        else:
            assert len(outputs) == 1


def test_bad_exports_are_one_line(tiny_run, tmp_path, capsys, monkeypatch):
    from labformer.serve.models import PRETRAINED

    assert main(["export", str(PRETRAINED / "text"), "--onnx", str(tmp_path / "x.onnx")]) == 2
    assert "holds a gpt run; ONNX export takes ViT runs" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing"), "--onnx", str(tmp_path / "x.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["export", str(tiny_run), "--onnx", str(tmp_path / "no-dir" / "x.onnx")]) == 2
    assert "cannot write" in capsys.readouterr().err
    import builtins

    real_import = builtins.__import__

    def without_onnxruntime(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("no onnxruntime", name="onnxruntime")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_onnxruntime)
    assert main(["export", str(tiny_run), "--onnx", str(tmp_path / "x.onnx")]) == 2
    assert "pip install onnx onnxruntime onnxscript" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()
