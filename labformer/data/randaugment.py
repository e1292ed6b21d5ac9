"""RandAugment (Cubuk et al., 2020) as torchvision's ``transforms.RandAugment`` applies it to PIL images,
written with torch ops on uint8 batches.

Per image, ``num_ops`` operations are drawn uniformly from the 14 below (with replacement); each runs at the
fixed ``magnitude`` bin of its table (31 bins by default), negated half the time for the signed ones. Each
operation computes what Pillow computes (torchvision hands PIL images to Pillow): ``ImageEnhance`` for
brightness, colour, contrast and sharpness, ``ImageOps`` for posterize, solarize, autocontrast and
equalize, ``Image.transform``/``Image.rotate`` with nearest sampling and black fill for the geometric
ones. The tests compare each operation with Pillow on the same pictures, and the draws with the
specification.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["OPERATIONS", "RandAugment", "apply_operation", "magnitude_table", "operation_magnitude"]

# torchvision's order (``RandAugment._augmentation_space``): the index drawn picks from this list.
OPERATIONS = (
    "Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast",
    "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize",
)  # fmt: skip
_SIGNED = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast", "Sharpness"}


def magnitude_table(name: str, num_bins: int, height: int, width: int) -> Tensor | None:
    """The magnitudes of operation ``name``, one per bin (float64, (num_bins,)), or None for the operations
    that have none (Identity, AutoContrast, Equalize); torchvision's table for images of that size."""
    if name in ("Identity", "AutoContrast", "Equalize"):
        return None
    linear = {
        "ShearX": (0.0, 0.3), "ShearY": (0.0, 0.3),
        "TranslateX": (0.0, 150.0 / 331.0 * width), "TranslateY": (0.0, 150.0 / 331.0 * height),
        "Rotate": (0.0, 30.0), "Solarize": (255.0, 0.0),
        "Brightness": (0.0, 0.9), "Color": (0.0, 0.9), "Contrast": (0.0, 0.9), "Sharpness": (0.0, 0.9),
    }  # fmt: skip
    if name in linear:  # torch.linspace in float32, as torchvision builds it
        return torch.linspace(*linear[name], num_bins).double()
    if name == "Posterize":
        return (8 - (torch.arange(num_bins) / ((num_bins - 1) / 4)).round().int()).double()
    raise ValueError(f"unknown RandAugment operation {name!r}; expected one of {list(OPERATIONS)}")


def operation_magnitude(name: str, magnitude: int, num_bins: int, height: int, width: int) -> float:
    """The unsigned magnitude operation ``name`` runs at (0.0 for those without one)."""
    table = magnitude_table(name, num_bins, height, width)
    return 0.0 if table is None else float(table[magnitude])


@dataclass(frozen=True)
class RandAugment:
    """``num_ops`` random operations per picture at bin ``magnitude`` of ``num_bins``: uint8 (B, C, H, W),
    C = 1 or 3, to the same (a new tensor). Draws come from the generator given to the call."""

    num_ops: int = 2
    magnitude: int = 9
    num_bins: int = 31

    def __post_init__(self) -> None:
        if not isinstance(self.num_ops, int) or self.num_ops < 0:
            raise ValueError(f"RandAugment's number of operations must be an integer >= 0; got {self.num_ops}")
        if not isinstance(self.num_bins, int) or self.num_bins < 2:
            raise ValueError(f"RandAugment's number of bins must be an integer >= 2; got {self.num_bins}")
        if not isinstance(self.magnitude, int) or not 0 <= self.magnitude < self.num_bins:
            raise ValueError(f"RandAugment's magnitude must be a bin in [0, {self.num_bins - 1}]; got {self.magnitude}")

    def draw(self, count: int, height: int, width: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """The operations of ``count`` pictures: indices into :data:`OPERATIONS` (count, num_ops) and their
        signed magnitudes (count, num_ops), float64."""
        device = generator.device
        ops = torch.randint(len(OPERATIONS), (count, self.num_ops), generator=generator, device=device)
        negate = torch.randint(2, (count, self.num_ops), generator=generator, device=device).bool()
        values, signed = [], []
        for name in OPERATIONS:
            values.append(operation_magnitude(name, self.magnitude, self.num_bins, height, width))
            signed.append(name in _SIGNED)
        value = torch.tensor(values, dtype=torch.float64, device=device)[ops]
        flips = negate & torch.tensor(signed, device=device)[ops]
        return ops, torch.where(flips, -value, value)

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(
                f"RandAugment takes uint8 pictures (batch, 1 or 3 channels, height, width); got {images.dtype} "
                f"{tuple(images.shape)}"
            )
        B, _, H, W = images.shape
        ops, magnitudes = self.draw(B, H, W, generator)
        out = images.clone()
        for slot in range(self.num_ops):
            for index, name in enumerate(OPERATIONS):
                if name == "Identity":
                    continue
                chosen = (ops[:, slot] == index).nonzero()[:, 0].to(images.device)
                if len(chosen):
                    out[chosen] = apply_operation(name, out[chosen], magnitudes[chosen, slot].to(images.device))
        return out


def apply_operation(name: str, images: Tensor, magnitude: Tensor) -> Tensor:
    """Operation ``name`` on uint8 pictures (B, C, H, W), C = 1 or 3, each at its own signed magnitude
    (B,) (ignored by Identity, AutoContrast and Equalize) -> uint8 (B, C, H, W)."""
    magnitude = magnitude.to(torch.float64)
    if name == "Identity":
        return images
    if name in ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"):
        return _affine(images, _inverse_matrices(name, magnitude, images.shape[-2], images.shape[-1]))
    if name in ("Brightness", "Color", "Contrast", "Sharpness"):
        return _blend(_degenerate(name, images), images, 1.0 + magnitude)
    if name == "Posterize":
        keep = (255 - (2 ** (8 - magnitude.round().long()) - 1)).to(torch.uint8)  # the bits kept
        return images & keep.view(-1, 1, 1, 1)
    if name == "Solarize":
        threshold = magnitude.view(-1, 1, 1, 1)
        return torch.where(images.double() < threshold, images, 255 - images)
    if name == "AutoContrast":
        return _autocontrast(images)
    if name == "Equalize":
        return _equalize(images)
    raise ValueError(f"unknown RandAugment operation {name!r}; expected one of {list(OPERATIONS)}")


def _inverse_matrices(name: str, magnitude: Tensor, height: int, width: int) -> Tensor:
    """Per picture, the affine map from an output pixel's centre to where it samples the input, Pillow's
    six coefficients (B, 6), as torchvision's ``F.affine``/``F.rotate`` hand them to Pillow."""
    one, zero = torch.ones_like(magnitude), torch.zeros_like(magnitude)
    if name == "ShearX":  # shear about the top-left corner: x_in = x + tan(atan(m)) y
        rows = (one, torch.tan(torch.atan(magnitude)), zero, zero, one, zero)
    elif name == "ShearY":
        rows = (one, zero, zero, torch.tan(torch.atan(magnitude)), one, zero)
    elif name == "TranslateX":  # torchvision translates by int(magnitude) pixels
        rows = (one, zero, -magnitude.trunc(), zero, one, zero)
    elif name == "TranslateY":
        rows = (one, zero, zero, zero, one, -magnitude.trunc())
    else:  # Rotate: Pillow's Image.rotate, counter-clockwise by the angle about the centre
        angle = -magnitude * (math.pi / 180)
        cos, sin = _round15(angle.cos()), _round15(angle.sin())
        cx, cy = width / 2, height / 2
        rows = (cos, sin, cos * -cx + sin * -cy + cx, -sin, cos, -sin * -cx + cos * -cy + cy)
    return torch.stack(rows, 1)


def _round15(values: Tensor) -> Tensor:
    """Pillow rounds the rotation's cosine and sine to 15 decimals."""
    return (values * 1e15).round() / 1e15


def _affine(images: Tensor, matrices: Tensor) -> Tensor:
    """Pillow's nearest-neighbour affine transform, in its 16.16 fixed point: output pixel (x, y) takes the
    input pixel containing (a(x+½) + b(y+½) + c, d(x+½) + e(y+½) + f); outside the picture, black."""
    B, C, H, W = images.shape
    fixed = ((matrices * 65536.0) + 0.5).floor().long()  # Pillow's FIX(v) of each coefficient
    a, b, d, e = (fixed[:, i].view(B, 1, 1) for i in (0, 1, 3, 4))
    centre = (matrices[:, [2, 5]] + matrices[:, [0, 3]] * 0.5 + matrices[:, [1, 4]] * 0.5) * 65536.0
    c, f = ((centre + 0.5).floor().long()[:, i].view(B, 1, 1) for i in (0, 1))
    y = torch.arange(H, device=images.device).view(1, H, 1)
    x = torch.arange(W, device=images.device).view(1, 1, W)
    x_in, y_in = (c + y * b + x * a) >> 16, (f + y * e + x * d) >> 16  # (B, H, W), floored
    inside = (x_in >= 0) & (y_in >= 0) & (x_in < W) & (y_in < H)
    source = (y_in.clamp(0, H - 1) * W + x_in.clamp(0, W - 1)).view(B, 1, H * W).expand(B, C, H * W)
    picked = images.reshape(B, C, H * W).gather(2, source).view(B, C, H, W)
    return torch.where(inside.unsqueeze(1), picked, torch.zeros_like(picked))


def _luma(images: Tensor) -> Tensor:
    """Pillow's RGB -> L conversion (ITU-R 601-2 in 16-bit fixed point): uint8 (B, 3, H, W) -> int (B, 1, H, W)."""
    r, g, b = images.long().unbind(1)
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).unsqueeze(1)


def _degenerate(name: str, images: Tensor) -> Tensor:
    """The picture ``ImageEnhance`` blends away from (factor 0): black, grey, the mean grey, or smoothed;
    uint8 (B, C, H, W)."""
    if name == "Brightness":
        return torch.zeros_like(images)
    if name == "Color":
        return images if images.shape[1] == 1 else _luma(images).to(torch.uint8).expand_as(images)
    if name == "Contrast":
        luma = images.long() if images.shape[1] == 1 else _luma(images)
        mean = (luma.flatten(1).double().mean(1) + 0.5).floor()  # int(mean + 0.5)
        return mean.to(torch.uint8).view(-1, 1, 1, 1).expand_as(images)
    # Sharpness: ImageFilter.SMOOTH, the 3 x 3 kernel [1 1 1; 1 5 1; 1 1 1] / 13; the border is kept.
    B, C, H, W = images.shape
    kernel = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]], device=images.device) / 13
    smooth = F.conv2d(images.float().reshape(B * C, 1, H, W), kernel.view(1, 1, 3, 3)).view(B, C, H - 2, W - 2)
    out = images.clone()
    out[:, :, 1:-1, 1:-1] = (smooth + 0.5).clamp(0, 255).to(torch.uint8)
    return out


def _blend(degenerate: Tensor, images: Tensor, factor: Tensor) -> Tensor:
    """Pillow's ``Image.blend``: degenerate + factor (images - degenerate) in single precision, clipped to
    [0, 255] and truncated; factor (B,)."""
    alpha = factor.to(torch.float32).view(-1, 1, 1, 1)
    start = degenerate.float()
    return (start + alpha * (images.float() - start)).clamp(0, 255).to(torch.uint8)


def _autocontrast(images: Tensor) -> Tensor:
    """``ImageOps.autocontrast``: each channel stretched so its darkest value becomes 0 and its lightest 255."""
    B, C, H, W = images.shape
    flat = images.reshape(B, C, H * W)
    low, high = flat.amin(2, keepdim=True).double(), flat.amax(2, keepdim=True).double()
    # 255.0 / (high - low) as Python divides: torch's vectorised division can differ in the last bit.
    scales = torch.tensor([255.0 / max(span, 1) for span in range(256)], dtype=torch.float64, device=images.device)
    scale = scales[(high - low).long()]
    stretched = (flat.double() * scale + (-low * scale)).trunc().clamp(0, 255).to(torch.uint8)
    return torch.where(high > low, stretched, flat).view(B, C, H, W)


def _equalize(images: Tensor) -> Tensor:
    """``ImageOps.equalize``: per channel, the look-up table that spreads the histogram, as Pillow builds it
    (the lightest value's count left out of the step, half a step of offset)."""
    B, C, H, W = images.shape
    flat = images.reshape(B * C, H * W).long()
    histogram = torch.zeros(B * C, 256, dtype=torch.long, device=images.device).scatter_add_(
        1, flat, torch.ones_like(flat)
    )
    lightest = flat.amax(1, keepdim=True)
    step = (H * W - histogram.gather(1, lightest)) // 255  # (B*C, 1)
    below = histogram.cumsum(1) - histogram  # pixels darker than each value
    table = ((step // 2 + below) // step.clamp_min(1)).clamp(max=255)
    distinct = (histogram > 0).sum(1, keepdim=True)
    table = torch.where((step > 0) & (distinct > 1), table, torch.arange(256, device=images.device).expand_as(table))
    return table.gather(1, flat).to(torch.uint8).view(B, C, H, W)
