import math

import numpy as np
import pytest

from tripwire.detectors.multiple_testing import benjamini_hochberg, bonferroni


def _bh_reference(p: np.ndarray, alpha: float) -> list[bool]:
    try:
        from statsmodels.stats.multitest import multipletests
    except ImportError:
        from scipy.stats import false_discovery_control

        return (false_discovery_control(p, method="bh") <= alpha).tolist()
    return multipletests(p, alpha=alpha, method="fdr_bh")[0].tolist()


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.1])
def test_bh_matches_reference_implementation(seed, alpha):
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 60))
    # A mix of nulls (uniform) and signals (near zero) so both outcomes occur.
    p = np.where(rng.random(m) < 0.3, rng.random(m) * 1e-3, rng.random(m))
    assert benjamini_hochberg(p.tolist(), alpha) == _bh_reference(p, alpha)


def test_bh_step_up_rejects_below_largest_passing_rank():
    # 0.03 > 2*0.05/4 on its own, but rank 3 (0.036 <= 3*0.05/4) pulls it in.
    assert benjamini_hochberg([0.01, 0.036, 0.03, 0.5], 0.05) == [True, True, True, False]
    assert benjamini_hochberg([0.2, 0.3, 0.9], 0.05) == [False, False, False]


def test_bonferroni():
    p = [0.001, 0.0125, 0.0126, 0.5]
    assert bonferroni(p, 0.05) == [True, True, False, False]
    rng = np.random.default_rng(3)
    q = rng.random(30) * 0.01
    assert bonferroni(q.tolist(), 0.05) == (q <= 0.05 / 30).tolist()


def test_missing_pvalues_are_skipped_and_not_counted():
    assert bonferroni([0.02, None, math.nan], 0.05) == [True, False, False]
    assert benjamini_hochberg([0.02, None, math.nan, 0.04], 0.05) == [True, False, False, True]
    assert benjamini_hochberg([], 0.05) == []
    assert bonferroni([None], 0.05) == [False]


@pytest.mark.parametrize("fn", [benjamini_hochberg, bonferroni])
def test_rejects_bad_input(fn):
    with pytest.raises(ValueError):
        fn([0.1], 0.0)
    with pytest.raises(ValueError):
        fn([1.5], 0.05)
