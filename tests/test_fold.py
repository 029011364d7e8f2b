import random

import numpy as np
import pytest

from tripwire.fold import _plain_numbers

VALUES = [0.5, -3.0, 7, 0, 2**70, True, False, None, "1.5", float("nan"), np.float64(2.0), np.int64(3), [1.0]]


@pytest.mark.parametrize("seed", range(200))
def test_plain_numbers_only_when_every_value_is_an_int_or_a_float(seed):
    rng = random.Random(seed)
    values = tuple(rng.choice(VALUES[:5] if seed % 2 else VALUES) for _ in range(rng.randint(0, 12)))
    floats = _plain_numbers(values)
    if all(type(v) is float or type(v) is int for v in values):
        assert floats is not None
        assert floats.dtype == np.float64
        np.testing.assert_array_equal(floats, np.array(values, dtype=float))
    else:
        assert floats is None
