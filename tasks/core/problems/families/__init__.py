"""Procedural problem families (shapes, the Family record, the catalogue). See :mod:`.catalog`."""

from .catalog import FAMILIES, HELD_OUT_FAMILIES
from .model import Family, fill
from .shapes import SHAPES, Shape, Variant, program

__all__ = ["FAMILIES", "HELD_OUT_FAMILIES", "Family", "fill", "SHAPES", "Shape", "Variant", "program"]
