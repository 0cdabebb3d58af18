"""A linear program in HiGHS's form, its solution with HiGHS, and the arithmetic an auditor
needs to check an optimum from the vectors alone::

    minimise    cost @ x + offset
    subject to  row_lower <= A @ x <= row_upper
                col_lower <=     x <= col_upper

Duals follow HiGHS's convention: the reduced costs are ``z = cost - A.T @ y``; a multiplier
(``y_i`` or ``z_j``) is >= 0 where its lower bound binds and <= 0 where its upper bound binds.
For *any* ``y``, weak duality bounds every feasible objective from below by

    offset + sum_i y_i * (L_i if y_i > 0 else U_i) + sum_j z_j * (l_j if z_j > 0 else u_j)

as long as each bound the signs pick is finite; a multiplier that picks an infinite bound is
a dual infeasibility (reported, and left out of the sum). At an optimum the bound equals the
primal objective: the duality gap is zero.
"""

from __future__ import annotations

import enum
import hashlib
import os
import sys
import time
from dataclasses import dataclass

import highspy
import numpy as np
import scipy.sparse as sp

from peerwatt.errors import PeerwattError

INF = highspy.kHighsInf


class SolverError(PeerwattError):
    """HiGHS did not return an optimal solution (the clearing LP is always feasible and bounded,
    so this means a numerical failure or a time limit)."""


class Algorithm(enum.Enum):
    """HiGHS's ``solver`` option (``CHOOSE`` lets HiGHS decide)."""

    CHOOSE = "choose"
    SIMPLEX = "simplex"
    IPM = "ipm"
    PDLP = "pdlp"


@dataclass(frozen=True, eq=False)
class LinearProgram:
    """An LP in HiGHS's form; ``matrix`` is CSC with sorted indices."""

    cost: np.ndarray
    matrix: sp.csc_matrix
    row_lower: np.ndarray
    row_upper: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray
    offset: float = 0.0

    @property
    def n_cols(self) -> int:
        return int(self.cost.size)

    @property
    def n_rows(self) -> int:
        return int(self.row_lower.size)

    def digest(self) -> str:
        """SHA-256 of the model's numbers: ties a certificate to the model it certifies."""
        sha = hashlib.sha256()
        for array in (
            self.cost,
            self.row_lower,
            self.row_upper,
            self.col_lower,
            self.col_upper,
            self.matrix.indptr.astype("<i8"),
            self.matrix.indices.astype("<i8"),
            self.matrix.data,
            np.array([self.offset]),
        ):
            sha.update(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes())
        return sha.hexdigest()


@dataclass(frozen=True, eq=False)
class LpSolution:
    """HiGHS's optimal primal and dual vectors and objective (including the offset)."""

    x: np.ndarray
    row_dual: np.ndarray
    col_dual: np.ndarray
    objective: float
    seconds: float


def _silent_highs() -> highspy.Highs:
    """A HiGHS instance that prints nothing. Its constructor writes a banner straight to file
    descriptor 1 before any option can be set, which would corrupt CSV or JSON on stdout, so
    the descriptor points at /dev/null while it runs."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            highs = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    highs.setOptionValue("output_flag", False)
    return highs


def solve(lp: LinearProgram, algorithm: Algorithm = Algorithm.CHOOSE, threads: int | None = None) -> LpSolution:
    """Solve ``lp`` with HiGHS (silent, ``threads`` defaults to the machine's cores)."""
    highs = _silent_highs()
    # HiGHS sizes its thread pool once per process: later instances reuse the first value
    highs.setOptionValue("threads", threads or os.cpu_count() or 1)
    highs.setOptionValue("solver", algorithm.value)
    _check(highs.passModel(_highs_lp(lp)), "passModel")
    started = time.perf_counter()
    _check(highs.run(), "run")
    seconds = time.perf_counter() - started
    status = highs.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        raise SolverError(f"HiGHS stopped with status {highs.modelStatusToString(status)}")
    solution = highs.getSolution()
    return LpSolution(
        x=np.asarray(solution.col_value),
        row_dual=np.asarray(solution.row_dual),
        col_dual=np.asarray(solution.col_dual),
        objective=float(highs.getInfo().objective_function_value),
        seconds=seconds,
    )


def _highs_lp(lp: LinearProgram) -> highspy.HighsLp:
    model = highspy.HighsLp()
    model.num_col_, model.num_row_ = lp.n_cols, lp.n_rows
    model.offset_ = lp.offset
    model.col_cost_, model.col_lower_, model.col_upper_ = lp.cost, lp.col_lower, lp.col_upper
    model.row_lower_, model.row_upper_ = lp.row_lower, lp.row_upper
    model.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    model.a_matrix_.start_ = lp.matrix.indptr
    model.a_matrix_.index_ = lp.matrix.indices
    model.a_matrix_.value_ = lp.matrix.data
    return model


def _check(status: highspy.HighsStatus, step: str) -> None:
    if status == highspy.HighsStatus.kError:
        raise SolverError(f"HiGHS {step} failed")


# -------------------------------------------------------------------- audit arithmetic


def primal_objective(lp: LinearProgram, x: np.ndarray) -> float:
    return float(lp.cost @ x + lp.offset)


def primal_infeasibility(lp: LinearProgram, x: np.ndarray) -> float:
    """The largest violation of a row or column bound by ``x`` (0 if feasible)."""
    activity = lp.matrix @ x
    violations = (
        lp.row_lower - activity,
        activity - lp.row_upper,
        lp.col_lower - x,
        x - lp.col_upper,
    )
    return float(max(np.max(v, initial=0.0) for v in violations))


@dataclass(frozen=True)
class DualBound:
    """The weak-duality lower bound of ``y`` and its dual infeasibility (largest multiplier
    that picks an infinite bound; the bound is valid when that is 0)."""

    value: float
    infeasibility: float


def dual_bound(lp: LinearProgram, row_dual: np.ndarray) -> DualBound:
    """The dual objective of the row duals ``row_dual``, with the reduced costs recomputed as
    ``cost - A.T @ y`` rather than taken from the solver."""
    reduced_cost = lp.cost - lp.matrix.T @ row_dual
    rows = _bound_terms(row_dual, lp.row_lower, lp.row_upper)
    cols = _bound_terms(reduced_cost, lp.col_lower, lp.col_upper)
    return DualBound(lp.offset + rows.value + cols.value, max(rows.infeasibility, cols.infeasibility))


def _bound_terms(multiplier: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> DualBound:
    bound = np.where(multiplier > 0, lower, upper)
    finite = np.isfinite(bound)
    value = float(multiplier[finite] @ bound[finite])
    infeasibility = float(np.max(np.abs(multiplier[~finite]), initial=0.0))
    return DualBound(value, infeasibility)
