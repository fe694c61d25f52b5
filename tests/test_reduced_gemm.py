"""The reduced-precision products of ``reduced_gemm.h`` (``_cy.PackedMatrix``) against the NumPy
reference ``fastrnn._python.reduced``, on every kernel level this CPU runs.

int8 must equal the reference bit for bit (its sums are exact int32 and its epilogue rounds
as the reference does); bf16 must stay within the a-priori bound of a float32 sum of the
same exact bf16 products, in any order. Both must give the same bits for a row whatever
rows it is computed with.
"""

import numpy as np
import pytest

from conftest import require_backend
from fastrnn._python.reduced import bf16_round, reduce_matrix

PRECISIONS = ("int8", "bf16")
SIZES = (1, 3, 5, 17, 64, 100, 257, 1024)


@pytest.fixture(scope="module")
def cy():
    require_backend("cython")
    from fastrnn import _cy

    return _cy


def supported_levels():
    """(precision, level) pairs this CPU runs ([] without the extension)."""
    try:
        from fastrnn import _cy
    except ImportError:
        return []
    return [(p, level) for p, levels in _cy.reduced_levels_supported().items() for level in levels]


LEVELS = supported_levels() or [pytest.param(None, None, marks=pytest.mark.skip("no extension"))]
INT8_LEVELS = [pl for pl in LEVELS if not isinstance(pl, tuple) or pl[0] == "int8"]
BF16_LEVELS = [pl for pl in LEVELS if not isinstance(pl, tuple) or pl[0] == "bf16"]


def reference(w, a, bias, precision):
    """The reference product ``(bias or 0) + a W^T`` in float32."""
    p = reduce_matrix(w, precision).product(a)
    with np.errstate(invalid="ignore", over="ignore"):
        return (np.zeros(p.shape[1], np.float32) if bias is None else bias) + p


def assert_bits(actual, expected):
    assert actual.dtype == np.float32 and actual.shape == expected.shape
    equal = np.array_equal(actual, expected, equal_nan=True)
    if not equal:
        bad = np.argwhere(~((actual == expected) | (np.isnan(actual) & np.isnan(expected))))
        r, j = bad[0]
        raise AssertionError(f"{len(bad)} elements differ, first at {(r, j)}: "
                             f"{actual[r, j]!r} != {expected[r, j]!r}")


def assert_bf16_close(actual, w, a, bias):
    """Within the bound of a float32 sum of k exact products plus the bias, in any order:
    |error| <= (k + 1) u (|bias| + sum_i |a_i w_i|), u = 2**-24, on bf16-rounded a and w."""
    ab = bf16_round(a).astype(np.float64)
    wb = bf16_round(w).astype(np.float64)
    b = np.zeros(w.shape[0]) if bias is None else bias.astype(np.float64)
    exact = b + ab @ wb.T
    bound = (w.shape[1] + 1) * 2.0 ** -24 * (np.abs(b) + np.abs(ab) @ np.abs(wb).T)
    error = np.abs(actual.astype(np.float64) - exact)
    assert np.all(error <= bound), f"largest error / bound {np.max(error / np.maximum(bound, 1e-300))}"


def random(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


# ---- levels


def test_levels_supported_and_current(cy):
    supported = cy.reduced_levels_supported()
    assert set(supported) == set(PRECISIONS)
    assert supported["int8"][-1] == "generic" and supported["bf16"][-1] == "emulated"
    for precision, level in cy.reduced_levels().items():
        assert level in supported[precision]
        assert cy.PackedMatrix(precision, np.ones((2, 3), np.float32)).level == level


@pytest.mark.parametrize("precision", PRECISIONS)
def test_level_argument(cy, precision):
    for level in cy.reduced_levels_supported()[precision]:
        assert cy.PackedMatrix(precision, np.ones((2, 3), np.float32), level=level).level == level
    with pytest.raises(ValueError, match="level"):
        cy.PackedMatrix(precision, np.ones((2, 3), np.float32), level="no such level")


def test_levels_follow_the_float_level(cy):
    """int8 runs VNNI only under the avx512 float level, AVX2 kernels under avx2 or avx512;
    bf16 runs avx512_bf16 only under avx512."""
    before, why = cy.isa_level()
    supported = cy.reduced_levels_supported()
    try:
        for isa in cy.isa_levels():
            cy.set_isa_level(isa)
            levels = cy.reduced_levels()
            if isa == "generic":
                assert levels == {"int8": "generic", "bf16": "emulated"}
            if isa == "avx2":
                avx2 = "avx2" if "avx2" in supported["int8"] else "generic"
                assert levels == {"int8": avx2, "bf16": "emulated"}
            if isa == "avx512":
                assert levels["int8"] == supported["int8"][0]
                assert levels["bf16"] == supported["bf16"][0]
    finally:
        cy.set_isa_level(before, reason=why)


# ---- int8: bit for bit


@pytest.mark.parametrize("precision,level", INT8_LEVELS)
@pytest.mark.parametrize("k", SIZES)
def test_int8_shapes(cy, precision, level, k):
    rng = np.random.default_rng(k)
    for n in SIZES:
        w = random(rng, n, k)
        packed = cy.PackedMatrix("int8", w, level=level)
        assert packed.level == level
        for rows in (1, 2, 3, 8, 13, 70):
            a = random(rng, rows, k, scale=3.0)
            bias = random(rng, n)
            assert_bits(packed.product(a, bias), reference(w, a, bias, "int8"))
        assert_bits(packed.product(a), reference(w, a, None, "int8"))


@pytest.mark.parametrize("precision,level", INT8_LEVELS)
def test_int8_every_row_count(cy, precision, level):
    rng = np.random.default_rng(1)
    w = random(rng, 100, 257)
    packed = cy.PackedMatrix("int8", w, level=level)
    for rows in range(1, 71):
        a = random(rng, rows, 257)
        bias = random(rng, 100)
        assert_bits(packed.product(a, bias), reference(w, a, bias, "int8"))


def special_rows(k):
    """Rows of zeros, NaN, infinity, huge and tiny values, and values that scale to exact
    halves (a * 127 / max|a| = m + 0.5, which rint rounds to even)."""
    rng = np.random.default_rng(7)
    rows = np.zeros((10, k), np.float32)
    rows[1] = random(rng, k)
    rows[1, k // 2] = np.nan
    rows[2] = random(rng, k)
    rows[2, 0] = np.inf
    rows[3] = -np.inf
    rows[4] = random(rng, k) * np.float32(1e37)
    rows[5] = random(rng, k) * np.float32(1e-38)                 # subnormal scale
    halves = (np.arange(k) % 254 - 126.5).astype(np.float32)      # -126.5 .. 126.5 by 1
    rows[6] = halves
    rows[6, 0] = 127.0                                           # max 127: scaling by 1
    rows[7] = 2 * rows[6]                                        # max 254: scaling by 1/2
    rows[8, 0] = 1.0                                             # one value, all others 0
    rows[9] = np.float32(3.4e38) * np.sign(random(rng, k))       # near FLT_MAX
    return rows


@pytest.mark.parametrize("precision,level", INT8_LEVELS)
@pytest.mark.parametrize("k", (1, 5, 64, 257))
def test_int8_special_rows(cy, precision, level, k):
    rng = np.random.default_rng(3)
    a = special_rows(k)
    for w in (random(rng, 37, k), special_rows(k), special_rows(k)[::-1].copy() * np.float32(-1)):
        packed = cy.PackedMatrix("int8", w, level=level)
        for bias in (None, random(rng, w.shape[0])):
            out = packed.product(a, bias)
            assert_bits(out, reference(w, a, bias, "int8"))
            assert np.all(np.isnan(out[1:4]))  # rows holding NaN or inf give NaN
    if k > 1:  # the halves do round to even (a check of the test's rows)
        assert abs(int(reduce_matrix(a[6:7], "int8").values[0, 1])) % 2 == 0


# ---- bf16: within float32 rounding


@pytest.mark.parametrize("precision,level", BF16_LEVELS)
@pytest.mark.parametrize("k", SIZES)
def test_bf16_shapes(cy, precision, level, k):
    rng = np.random.default_rng(k)
    for n in SIZES:
        w = random(rng, n, k)
        packed = cy.PackedMatrix("bf16", w, level=level)
        assert packed.level == level
        for rows in (1, 2, 3, 8, 13, 70):
            a = random(rng, rows, k, scale=3.0)
            bias = random(rng, n)
            assert_bf16_close(packed.product(a, bias), w, a, bias)
        assert_bf16_close(packed.product(a), w, a, None)


@pytest.mark.parametrize("precision,level", BF16_LEVELS)
def test_bf16_non_finite(cy, precision, level):
    rng = np.random.default_rng(5)
    w = random(rng, 40, 33)
    a = random(rng, 4, 33)
    a[1, 3] = np.nan
    a[2, 0] = np.inf
    out = cy.PackedMatrix("bf16", w, level=level).product(a, random(rng, 40))
    assert np.all(np.isnan(out[1])) and not np.any(np.isfinite(out[2]))
    assert np.all(np.isfinite(out[[0, 3]]))


# ---- both: a row's result does not depend on the rows computed with it


@pytest.mark.parametrize("precision,level", LEVELS)
def test_rows_in_any_grouping(cy, precision, level):
    rng = np.random.default_rng(11)
    for n, k in ((100, 257), (64, 1024), (33, 17)):
        w = random(rng, n, k)
        a = random(rng, 150, k)
        bias = random(rng, n)
        packed = cy.PackedMatrix(precision, w, level=level)
        whole = packed.product(a, bias)  # 150 rows: two chunks of rows (RP_CHUNK = 128)
        if precision == "int8":
            assert_bits(whole, reference(w, a, bias, "int8"))
        else:
            assert_bf16_close(whole, w, a, bias)
        for lo, hi in ((0, 1), (1, 2), (3, 7), (7, 20), (20, 149), (149, 150)):
            assert_bits(packed.product(a[lo:hi], bias), whole[lo:hi])
        for r in (0, 5, 131):
            assert_bits(packed.product(a[r:r + 1], bias), whole[r:r + 1])


def test_bf16_levels_agree(cy):
    """Every bf16 level within the bound of the others' exact sum (and int8 levels, as each
    equals the reference, agree bit for bit)."""
    rng = np.random.default_rng(13)
    w = random(rng, 70, 300)
    a = random(rng, 9, 300)
    for level in cy.reduced_levels_supported()["bf16"]:
        assert_bf16_close(cy.PackedMatrix("bf16", w, level=level).product(a), w, a, None)


def test_bf16_emulated_under_every_float_level(cy):
    """The emulated level runs its AVX2 + FMA or its baseline build by the float level; the
    products are exact in float32, so both give the same bits."""
    rng = np.random.default_rng(17)
    w = random(rng, 50, 77)
    a = random(rng, 13, 77)
    bias = random(rng, 50)
    packed = cy.PackedMatrix("bf16", w, level="emulated")
    before, why = cy.isa_level()
    try:
        outs = []
        for isa in cy.isa_levels():
            cy.set_isa_level(isa)
            outs.append(packed.product(a, bias))
            assert_bf16_close(outs[-1], w, a, bias)
    finally:
        cy.set_isa_level(before, reason=why)
    for out in outs[1:]:
        assert_bits(out, outs[0])


@pytest.mark.parametrize("precision,level", LEVELS)
def test_rows_apart_and_accumulating(cy, precision, level):
    """Rows of a and of out read and written in place with their strides; without a bias
    the product is added to what out holds (c + p, as the reference adds it)."""
    rng = np.random.default_rng(19)
    w = random(rng, 45, 70)
    a_big = random(rng, 20, 100)
    out_big = random(rng, 20, 60)
    kept = out_big.copy()
    a, out = a_big[:, 10:80], out_big[:, 5:50]
    before = out.copy()
    packed = cy.PackedMatrix(precision, w, level=level)
    assert packed.product(a, None, out) is out
    if precision == "int8":
        assert_bits(out, before + reduce_matrix(w, "int8").product(np.ascontiguousarray(a)))
    else:
        assert_bf16_close(out, w, a, before)
    kept[:, 5:50] = out
    assert_bits(out_big, kept)   # nothing written outside the view
    bias = random(rng, 45)
    assert_bits(packed.product(a, bias, out), packed.product(np.ascontiguousarray(a), bias))


@pytest.mark.parametrize("precision,level", LEVELS)
def test_columns_split(cy, precision, level):
    """Output columns computed in aligned parts (as threads splitting W would) give the bits
    of the whole."""
    rng = np.random.default_rng(23)
    w = random(rng, 150, 77)
    a = random(rng, 11, 77)
    bias = random(rng, 150)
    packed = cy.PackedMatrix(precision, w, level=level)
    whole = packed.product(a, bias)
    align = packed.column_align
    cuts = sorted({0, align, 3 * align, 150} & set(range(0, 151, align)) | {150})
    out = np.full((11, 150), np.nan, np.float32)
    for j0, j1 in zip(cuts[:-1], cuts[1:]):
        packed.product(a, bias, out, columns=(j0, j1))
    assert_bits(out, whole)
    with pytest.raises(ValueError, match="columns"):
        packed.product(a, bias, out, columns=(1, 150) if align > 1 else (5, 151))
