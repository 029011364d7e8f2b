import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tripwire.detectors.plain import plain_floats

VALUES = [0.5, -3.0, 7, 0, 2**70, None, True, False, "1.5", float("nan"), np.float64(2.0), np.int64(3), [1.0]]


@settings(max_examples=300)
@given(values=st.lists(st.sampled_from(VALUES[:6]), max_size=12) | st.lists(st.sampled_from(VALUES), max_size=12),
       none_too=st.booleans())
def test_plain_floats_only_when_every_value_is_an_int_or_a_float(values, none_too):
    values = tuple(values)
    floats = plain_floats(values, none_too)
    allowed = (float, int, type(None)) if none_too else (float, int)
    if all(type(v) in allowed for v in values):
        assert floats is not None
        assert floats.dtype == np.float64
        np.testing.assert_array_equal(floats, np.array(values, dtype=float))  # None -> NaN, as numpy does
    else:
        assert floats is None
