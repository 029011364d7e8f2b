import random

import numpy as np
import pytest

from tripwire.detectors.plain import plain_floats

VALUES = [0.5, -3.0, 7, 0, 2**70, None, True, False, "1.5", float("nan"), np.float64(2.0), np.int64(3), [1.0]]


@pytest.mark.parametrize("none_too", [False, True])
@pytest.mark.parametrize("seed", range(150))
def test_plain_floats_only_when_every_value_is_an_int_or_a_float(seed, none_too):
    rng = random.Random(seed)
    pool = VALUES[:6] if seed % 2 else VALUES
    values = tuple(rng.choice(pool) for _ in range(rng.randint(0, 12)))
    floats = plain_floats(values, none_too)
    allowed = (float, int, type(None)) if none_too else (float, int)
    if all(type(v) in allowed for v in values):
        assert floats is not None
        assert floats.dtype == np.float64
        np.testing.assert_array_equal(floats, np.array(values, dtype=float))  # None -> NaN, as numpy does
    else:
        assert floats is None
