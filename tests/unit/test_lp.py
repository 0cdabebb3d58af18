"""The LP wrapper: HiGHS's sign conventions and the auditor's arithmetic on a tiny LP."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from settlement.lp import INF, Algorithm, LinearProgram, dual_bound, primal_infeasibility, primal_objective, solve


def tiny() -> LinearProgram:
    """min x + 2y + 1  s.t.  x + y >= 1,  x <= 0.5,  0 <= x, y: optimum x = y = 0.5, objective 2.5."""
    return LinearProgram(
        cost=np.array([1.0, 2.0]),
        matrix=sp.csc_matrix(np.array([[1.0, 1.0], [1.0, 0.0]])),
        row_lower=np.array([1.0, -INF]),
        row_upper=np.array([INF, 0.5]),
        col_lower=np.zeros(2),
        col_upper=np.full(2, INF),
        offset=1.0,
    )


@pytest.mark.parametrize("algorithm", [Algorithm.SIMPLEX, Algorithm.IPM])
def test_solution_and_duals_follow_highs_conventions(algorithm: Algorithm) -> None:
    lp = tiny()
    solution = solve(lp, algorithm)
    assert solution.x == pytest.approx([0.5, 0.5])
    assert solution.objective == pytest.approx(2.5)
    assert solution.row_dual == pytest.approx([2.0, -1.0])  # >= 0 at a lower bound, <= 0 at an upper
    bound = dual_bound(lp, solution.row_dual)
    assert bound.value == pytest.approx(2.5) and bound.infeasibility == pytest.approx(0.0)


def test_weak_duality_and_infeasibility_measures() -> None:
    lp = tiny()
    assert dual_bound(lp, np.array([1.0, 0.0])).value == pytest.approx(2.0)  # a weaker, valid bound
    assert dual_bound(lp, np.array([3.0, 0.0])).infeasibility == pytest.approx(2.0)  # z = (-2, -1), no upper bounds
    assert primal_objective(lp, np.array([1.0, 0.0])) == pytest.approx(2.0)
    assert primal_infeasibility(lp, np.array([1.0, 0.0])) == pytest.approx(0.5)  # x <= 0.5 broken
    assert primal_infeasibility(lp, np.array([0.5, 0.5])) == 0.0
    assert tiny().digest() == tiny().digest() != LinearProgram(**{**tiny().__dict__, "offset": 0.0}).digest()
