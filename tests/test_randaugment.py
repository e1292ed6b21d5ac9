"""RandAugment: each operation against Pillow on the same pictures (what torchvision's RandAugment calls
on PIL images), and the draws against torchvision's specification."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import CtrlC
from PIL import Image, ImageEnhance, ImageOps

import labformer
from labformer.data import Augment, ImageData, ImageSplit
from labformer.data.randaugment import OPERATIONS, RandAugment, apply_operation, magnitude_table
from labformer.training import classify


def _inverse_affine_matrix(
    center: list[float], angle: float, translate: list[float], scale: float, shear: list[float]
) -> list[float]:
    """torchvision's ``_get_inverse_affine_matrix`` (transforms/functional.py), written out independently."""
    rot, sx, sy = math.radians(angle), math.radians(shear[0]), math.radians(shear[1])
    cx, cy = center
    tx, ty = translate
    a = math.cos(rot - sy) / math.cos(sy)
    b = -math.cos(rot - sy) * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    matrix = [x / scale for x in (d, -b, 0.0, -c, a, 0.0)]
    matrix[2] += matrix[0] * (-cx - tx) + matrix[1] * (-cy - ty)
    matrix[5] += matrix[3] * (-cx - tx) + matrix[4] * (-cy - ty)
    matrix[2] += cx
    matrix[5] += cy
    return matrix


def _pillow(name: str, image: Image.Image, magnitude: float) -> Image.Image:
    """torchvision's ``_apply_op`` on a PIL image (nearest sampling, black fill), through Pillow."""
    fill = 0 if image.mode == "L" else (0, 0, 0)
    width, height = image.size

    def affine(angle: float, translate: list[float], shear: list[float], center: list[float] | None) -> Image.Image:
        centre = [width * 0.5, height * 0.5] if center is None else center
        matrix = _inverse_affine_matrix(centre, angle, translate, 1.0, shear)
        return image.transform(image.size, Image.Transform.AFFINE, matrix, Image.Resampling.NEAREST, fillcolor=fill)

    if name == "Identity":
        return image
    if name == "ShearX":
        return affine(0.0, [0, 0], [math.degrees(math.atan(magnitude)), 0.0], [0, 0])
    if name == "ShearY":
        return affine(0.0, [0, 0], [0.0, math.degrees(math.atan(magnitude))], [0, 0])
    if name == "TranslateX":
        return affine(0.0, [int(magnitude), 0], [0.0, 0.0], None)
    if name == "TranslateY":
        return affine(0.0, [0, int(magnitude)], [0.0, 0.0], None)
    if name == "Rotate":
        return image.rotate(magnitude, Image.Resampling.NEAREST, fillcolor=fill)
    if name in ("Brightness", "Color", "Contrast", "Sharpness"):
        return getattr(ImageEnhance, name)(image).enhance(1.0 + magnitude)
    if name == "Posterize":
        return ImageOps.posterize(image, int(magnitude))
    if name == "Solarize":
        return ImageOps.solarize(image, magnitude)
    if name == "AutoContrast":
        return ImageOps.autocontrast(image)
    return ImageOps.equalize(image)


def _pictures(channels: int, height: int = 32, width: int = 32, count: int = 12) -> np.ndarray:
    """uint8 (count, H, W, C): noise, smooth gradients with shapes, narrow and flat ranges (for the
    histogram operations), and pictures with few values."""
    rng = np.random.default_rng(channels * 1000 + height + width)
    y, x = np.mgrid[0:height, 0:width]
    pictures = []
    for i in range(count):
        kind = i % 4
        if kind == 0:  # noise
            picture = rng.integers(0, 256, (height, width, channels))
        elif kind == 1:  # gradient with a disc
            base = (x * 255 / width)[..., None] * rng.uniform(0.3, 1, channels) + (y * 80 / height)[..., None]
            disc = ((x - width / 2) ** 2 + (y - height / 3) ** 2 < (width / 4) ** 2)[..., None]
            picture = np.where(disc, 255 - base, base)
        elif kind == 2:  # a narrow range, as in a dim photo
            low = rng.integers(20, 150)
            picture = rng.integers(low, low + rng.integers(1, 60), (height, width, channels))
        else:  # a few values only
            picture = rng.choice([0, 37, 128, 200, 255], (height, width, channels))
        pictures.append(np.clip(picture, 0, 255).astype(np.uint8))
    return np.stack(pictures)


def _to_pil(picture: np.ndarray) -> Image.Image:
    return Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture)


def _from_pil(image: Image.Image) -> np.ndarray:
    array = np.asarray(image)
    return array[..., None] if array.ndim == 2 else array


# Each operation at bins 0, 9 (the lab's), 20 and 30 of torchvision's table, both signs where signed.
CASES = [
    (name, 0.0 if table is None else sign * float(table[bin_]))
    for name in OPERATIONS
    for table in [magnitude_table(name, 31, 32, 32)]
    for bin_ in ((0,) if table is None else (0, 9, 20, 30))
    for sign in ((1,) if table is None or name in ("Posterize", "Solarize") else (1, -1))
]


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize(("name", "magnitude"), CASES)
def test_each_operation_equals_pillow(name: str, magnitude: float, channels: int) -> None:
    pictures = _pictures(channels)
    ours = apply_operation(
        name, torch.from_numpy(pictures).permute(0, 3, 1, 2).contiguous(), torch.full((len(pictures),), magnitude)
    )
    expected = np.stack([_from_pil(_pillow(name, _to_pil(p), magnitude)) for p in pictures])
    np.testing.assert_array_equal(ours.permute(0, 2, 3, 1).numpy(), expected, err_msg=f"{name} at {magnitude}")


@pytest.mark.parametrize("name", ["ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Sharpness"])
def test_geometry_on_pictures_that_are_not_square(name: str) -> None:
    """Width and height are not swapped: 24 x 40 pictures, with the magnitudes of their own table."""
    pictures = _pictures(3, height=24, width=40, count=4)
    magnitude = float(magnitude_table(name, 31, 24, 40)[17])
    for sign in (1, -1):
        ours = apply_operation(
            name, torch.from_numpy(pictures).permute(0, 3, 1, 2).contiguous(), torch.full((4,), sign * magnitude)
        )
        expected = np.stack([_from_pil(_pillow(name, _to_pil(p), sign * magnitude)) for p in pictures])
        np.testing.assert_array_equal(ours.permute(0, 2, 3, 1).numpy(), expected)


def test_each_picture_gets_its_own_magnitude() -> None:
    pictures = torch.from_numpy(_pictures(3, count=4)).permute(0, 3, 1, 2).contiguous()
    magnitudes = torch.tensor([10.0, -10.0, 25.0, 0.0])
    together = apply_operation("Rotate", pictures, magnitudes)
    for i in range(4):
        assert torch.equal(together[i], apply_operation("Rotate", pictures[i : i + 1], magnitudes[i : i + 1])[0])


def test_magnitude_tables_are_torchvisions() -> None:
    """torchvision's ``RandAugment._augmentation_space(31, (32, 32))`` at bin 9, the lab's magnitude."""
    expected = {
        "ShearX": 0.09, "ShearY": 0.09, "TranslateX": 150 / 331 * 32 * 9 / 30, "TranslateY": 150 / 331 * 32 * 9 / 30,
        "Rotate": 9.0, "Brightness": 0.27, "Color": 0.27, "Contrast": 0.27, "Sharpness": 0.27,
        "Posterize": 7.0, "Solarize": 255 - 9 * 8.5,
    }  # fmt: skip
    for name in OPERATIONS:
        table = magnitude_table(name, 31, 32, 32)
        if name in ("Identity", "AutoContrast", "Equalize"):
            assert table is None
            continue
        assert table is not None and table.shape == (31,)
        assert float(table[9]) == pytest.approx(expected[name], abs=1e-6), name
    posterize = magnitude_table("Posterize", 31, 32, 32)
    assert posterize is not None and posterize[0] == 8 and posterize[30] == 4  # 8 bits kept down to 4
    assert magnitude_table("TranslateY", 31, 20, 50)[30] == pytest.approx(150 / 331 * 20, rel=1e-6)  # type: ignore[index]


def test_draws_follow_the_specification() -> None:
    """Operations uniform over the 14 (independently per slot), the table's value at the magnitude bin,
    negated half the time for the signed operations only."""
    augment = RandAugment(num_ops=2, magnitude=9)
    ops, values = augment.draw(140_000, 32, 32, torch.Generator().manual_seed(0))
    assert ops.shape == values.shape == (140_000, 2)
    counts = torch.bincount(ops.flatten(), minlength=14).double()
    expected = ops.numel() / 14
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 40, counts  # 13 degrees of freedom: p < 0.001 beyond 34.5
    first, second = ops[:, 0], ops[:, 1]
    assert abs(float((first == second).double().mean()) - 1 / 14) < 0.005  # drawn with replacement
    for index, name in enumerate(OPERATIONS):
        table = magnitude_table(name, 31, 32, 32)
        these = values[ops == index]
        if table is None:
            assert torch.all(these == 0)
            continue
        assert torch.allclose(these.abs(), table[9].expand_as(these))
        negative = float((these < 0).double().mean())
        if name in ("Posterize", "Solarize"):
            assert negative == 0.0
        else:
            assert abs(negative - 0.5) < 0.02, name


def test_same_seed_same_pictures_and_zero_operations_change_nothing() -> None:
    pictures = torch.from_numpy(_pictures(3)).permute(0, 3, 1, 2).contiguous()
    a = RandAugment()(pictures, torch.Generator().manual_seed(3))
    b = RandAugment()(pictures, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.equal(a, pictures)
    assert torch.equal(RandAugment(num_ops=0)(pictures, torch.Generator()), pictures)


def test_a_picture_gets_its_drawn_operations_in_order() -> None:
    """The batch result equals the drawn operations applied one after the other, picture by picture."""
    pictures = torch.from_numpy(_pictures(3, count=24)).permute(0, 3, 1, 2).contiguous()
    augment = RandAugment(num_ops=3, magnitude=14)
    out = augment(pictures, torch.Generator().manual_seed(5))
    ops, values = augment.draw(24, 32, 32, torch.Generator().manual_seed(5))
    for i in range(24):
        picture = pictures[i : i + 1]
        for slot in range(3):
            picture = apply_operation(OPERATIONS[int(ops[i, slot])], picture, values[i, slot : slot + 1])
        assert torch.equal(out[i], picture[0])


def test_bad_settings_and_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="magnitude must be a bin in \\[0, 30\\]"):
        RandAugment(magnitude=31)
    with pytest.raises(ValueError, match="number of operations"):
        RandAugment(num_ops=-1)
    with pytest.raises(ValueError, match="uint8 pictures"):
        RandAugment()(torch.rand(2, 3, 8, 8), torch.Generator())
    with pytest.raises(ValueError, match="uint8 pictures"):
        RandAugment()(torch.zeros(2, 4, 8, 8, dtype=torch.uint8), torch.Generator())
    with pytest.raises(ValueError, match="unknown RandAugment operation"):
        apply_operation("Cutout", torch.zeros(1, 3, 8, 8, dtype=torch.uint8), torch.zeros(1))


def test_the_randaugment_kind_is_randaugment_then_crop_and_flip() -> None:
    """Augment("randaugment") = RandAugment on the uint8 pictures, then the crop and flip of "crop_flip",
    drawing from the same generator in that order."""
    pictures = torch.from_numpy(_pictures(3)).permute(0, 3, 1, 2).contiguous()
    out = Augment.scaled("randaugment", 1.0, randaugment=RandAugment(2, 9))(pictures, torch.Generator().manual_seed(7))
    generator = torch.Generator().manual_seed(7)
    expected = Augment.scaled("crop_flip", 1.0)(RandAugment(2, 9)(pictures, generator).float() / 255, generator)
    assert out.dtype == torch.float32 and torch.equal(out, expected)
    with pytest.raises(ValueError, match="RandAugment works on uint8"):
        Augment.scaled("randaugment", 1.0)(pictures.float() / 255, torch.Generator())


def _photos(n: int, seed: int) -> ImageSplit:
    """Colour 16 x 16 'photos': class c is a bright square in one of 4 places (plus noise)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    images = torch.randint(0, 60, (n, 3, 16, 16), generator=generator, dtype=torch.uint8)
    for i, label in enumerate(labels.tolist()):
        top, left = 2 + 6 * (label // 2), 2 + 6 * (label % 2)
        images[i, :, top : top + 6, left : left + 6] = 220
    return ImageSplit(images, labels)


def test_a_randaugment_run_interrupted_mid_epoch_resumes_exactly(tmp_path):
    """RandAugment draws from the epoch's generator, whose state a mid-epoch checkpoint keeps."""
    data = ImageData("folder", _photos(96, 0), _photos(32, 1), _photos(32, 2), list("abcd"), (0.2,) * 3, (0.3,) * 3)
    shape = dict(image_size=16, channels=3, num_classes=4)
    model_config, train_config = classify.preset_configs(
        "cifar", "folder", dict(dim=16, depth=1, num_heads=2, mlp_dim=32),
        dict(epochs=2, batch_size=16, device="cpu", augment="randaugment", checkpoint_every=4), shape,
    )  # fmt: skip
    full = classify.train_classifier(model_config, train_config, out=tmp_path / "full", data=data, progress=False)
    with pytest.raises(KeyboardInterrupt):
        classify.train_classifier(
            model_config, train_config, out=tmp_path / "cut", data=data, progress=False, callbacks=[CtrlC(step=9)]
        )
    resumed = classify.train_classifier(
        None, classify.ClassifyConfig(device="cpu"), resume=tmp_path / "cut", data=data, progress=False
    )
    assert resumed["test_loss"] == pytest.approx(full["test_loss"], abs=1e-6)
    a, b = labformer.load(tmp_path / "full").state_dict(), labformer.load(tmp_path / "cut").state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=1e-5)
