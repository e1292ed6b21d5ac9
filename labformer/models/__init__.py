"""Models of the lab: the character GPT (Part 5) and the Vision Transformer (Part 6)."""

from labformer.models.vit import ViT, ViTConfig

__all__ = ["ViT", "ViTConfig"]
