"""Pure-Python quantization scalar-type table (test shim; see the package docstring)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class NanRepr(Enum):
    NONE = 0
    IEEE_754 = 1
    EXTD_RANGE_MAX_MIN = 2


@dataclass(frozen=True)
class ScalarType:
    exponent: int
    mantissa: int
    signed: bool
    bias: int
    _finite_values_only: bool = False
    nan_repr: NanRepr = NanRepr.IEEE_754

    @property
    def size_bits(self) -> int:
        return self.exponent + self.mantissa + int(self.signed)

    def is_floating_point(self) -> bool:
        return self.exponent != 0

    def is_integer(self) -> bool:
        return self.exponent == 0

    def is_signed(self) -> bool:
        return self.signed

    def has_bias(self) -> bool:
        return self.bias != 0

    def has_infs(self) -> bool:
        return not self._finite_values_only

    def has_nans(self) -> bool:
        return self.nan_repr != NanRepr.NONE

    def is_ieee_754(self) -> bool:
        return self.nan_repr == NanRepr.IEEE_754 and not self._finite_values_only

    def min(self) -> int | float:
        if self.is_integer():
            return (-(1 << self.mantissa) if self.signed else 0) - self.bias
        return -self.max() if self.signed else 0.0

    def max(self) -> int | float:
        if self.is_integer():
            return (1 << self.mantissa) - 1 - self.bias
        raise NotImplementedError("sgl_kernel test shim: float ScalarType.max")

    @property
    def id(self) -> int:
        return hash(self) & 0x7FFFFFFFFFFFFFFF

    def __str__(self) -> str:
        if self.is_floating_point():
            name = f"float{self.size_bits}_e{self.exponent}m{self.mantissa}"
            if not self.is_ieee_754():
                name += "f" if self._finite_values_only else ""
                name += {NanRepr.NONE: "n", NanRepr.EXTD_RANGE_MAX_MIN: "n"}.get(self.nan_repr, "")
            return name
        name = ("int" if self.signed else "uint") + str(self.size_bits)
        return name + (f"b{self.bias}" if self.has_bias() else "")

    def __repr__(self) -> str:
        return f"ScalarType.{self}"

    @classmethod
    def int_(cls, size_bits: int, bias: int | None) -> ScalarType:
        return cls(0, size_bits - 1, True, bias or 0)

    @classmethod
    def uint(cls, size_bits: int, bias: int | None) -> ScalarType:
        return cls(0, size_bits, False, bias or 0)

    @classmethod
    def float_IEEE754(cls, exponent: int, mantissa: int) -> ScalarType:
        return cls(exponent, mantissa, True, 0)

    @classmethod
    def float_(cls, exponent: int, mantissa: int, finite_values_only: bool,
               nan_repr: NanRepr) -> ScalarType:
        return cls(exponent, mantissa, True, 0, finite_values_only, nan_repr)


class scalar_types:
    int4 = ScalarType.int_(4, None)
    uint4 = ScalarType.uint(4, None)
    int8 = ScalarType.int_(8, None)
    uint8 = ScalarType.uint(8, None)
    float8_e4m3fn = ScalarType.float_(4, 3, True, NanRepr.EXTD_RANGE_MAX_MIN)
    float8_e5m2 = ScalarType.float_IEEE754(5, 2)
    float8_e8m0fnu = ScalarType(8, 0, False, 0, True, NanRepr.EXTD_RANGE_MAX_MIN)
    float16_e8m7 = ScalarType.float_IEEE754(8, 7)
    float16_e5m10 = ScalarType.float_IEEE754(5, 10)
    float6_e3m2f = ScalarType.float_(3, 2, True, NanRepr.NONE)
    float6_e2m3f = ScalarType.float_(2, 3, True, NanRepr.NONE)
    float4_e2m1f = ScalarType.float_(2, 1, True, NanRepr.NONE)
    uint2b2 = ScalarType.uint(2, 2)
    uint3b4 = ScalarType.uint(3, 4)
    uint4b8 = ScalarType.uint(4, 8)
    uint8b128 = ScalarType.uint(8, 128)
    bfloat16 = float16_e8m7
    float16 = float16_e5m10
