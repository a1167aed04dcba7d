"""Executable claims: what a notebook concludes from a training run, checked with a tolerance.

Training outcomes (accuracies, losses, angles after training) differ between CPUs: float32
rounding differs between kernels (AVX2, AVX-512, MKL code paths) and a spike threshold turns a
rounding difference into another spike, so two machines train two different networks. A notebook
therefore does not compare those numbers digit by digit; it states what it concludes as a claim
with a margin grounded in the measured spread over seeds and kernels (``docs/claims.md``), and
checks it. A claim that holds prints one line with no measured digit (``holds: ...``), the same on
every machine, so nbval compares it; a claim that fails raises :class:`ClaimError` with the
measured numbers.

Example:
    >>> from stllr.analysis.claims import Claims
    >>> check = Claims()
    >>> check.mean_above("S-TLLR (BP) mean final test accuracy", [61.0, 66.5, 64.0], 40.0,
    ...                  threshold_name="2x chance")
    >>> check.verify()
    holds: S-TLLR (BP) mean final test accuracy > 40 % (2x chance)

With ``STLLR_CLAIMS_LOG=FILE`` in the environment every claim (held or not) is appended to FILE
as one JSON line with its measured values: ``tools/claim_spread.py`` and
``tools/mutation_check.py`` read it."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Iterable, Optional, Sequence

__all__ = ["Claim", "ClaimError", "Claims"]


class ClaimError(AssertionError):
    """A notebook's claim does not hold on this run; the message carries the measured numbers."""


@dataclass
class Claim:
    """One checked statement. ``text`` is printed (no measured digits); ``measured`` is not."""

    text: str
    holds: bool
    measured: str
    values: dict = field(default_factory=dict)
    #: how far the measurement lies on the safe side of the threshold, in the claim's unit
    #: (negative or NaN: the claim fails); what tools/claim_runs.py reports as the margin
    slack: Optional[float] = None


def _numbers(values, name: str) -> list[float]:
    if (
        isinstance(values, (int, float)) or getattr(values, "ndim", None) == 0
    ):  # also 0-d tensors/arrays
        values = [values]
    elif hasattr(values, "tolist"):  # tensors, arrays
        values = values.tolist()
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise TypeError(
            f"{name}: expected a number or a sequence of numbers, got {values!r}"
        ) from None
    if not out:
        raise ValueError(f"{name}: expected at least one value, got an empty sequence")
    return out  # a NaN is kept: every comparison with it is False, so the claim fails and shows it


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def _slack_holds(slack: float, inclusive: bool = False) -> tuple[float, bool]:
    """``(slack, holds)``: a claim holds when its slack is positive (``>= 0`` when ``inclusive``);
    a NaN never holds."""
    slack = float(slack)
    return slack, (slack >= 0.0 if inclusive else slack > 0.0)


def _fmt(xs: Sequence[float], unit: str) -> str:
    u = f" {unit}" if unit else ""
    if len(xs) == 1:
        return f"{xs[0]:.4g}{u}"
    return f"mean {_mean(xs):.4g}{u} of [{', '.join(f'{x:.4g}' for x in xs)}]"


def _g(x: float) -> str:
    return f"{x:g}"


class Claims:
    """Collects claims, then :meth:`verify` prints them and raises if any failed.

    Parameters:
        unit: printed after thresholds and measured values (default ``"%"``); ``""`` for none.
        notebook: a name recorded in the claims log (default: ``$STLLR_NOTEBOOK`` or ``""``).

    Example:
        >>> check = Claims(unit="degrees")
        >>> check.mean_below("DFA angle to BP, last epoch", [57.0, 59.5], 75.0)
        >>> check.verify()
        holds: DFA angle to BP, last epoch < 75 degrees
    """

    def __init__(self, unit: str = "%", notebook: Optional[str] = None):
        self.unit = unit
        self.notebook = notebook if notebook is not None else os.environ.get("STLLR_NOTEBOOK", "")
        self.claims: list[Claim] = []

    # -- building blocks -----------------------------------------------------------------
    def _u(self, unit: Optional[str]) -> str:
        unit = self.unit if unit is None else unit
        return f" {unit}" if unit else ""

    def add(
        self, text: str, holds: bool, measured: str, slack: Optional[float] = None, **values
    ) -> None:
        """Record a claim decided by the caller. ``text`` must not contain measured digits; ``slack``:
        how far the measurement is from failing (for the spread report).

        Nothing is returned (a notebook cell ending in a claim shows no measured value)."""
        self.claims.append(
            Claim(
                str(text),
                bool(holds),
                str(measured),
                values,
                None if slack is None else float(slack),
            )
        )

    def mean_above(
        self,
        what: str,
        values,
        threshold: float,
        threshold_name: str = "",
        unit: Optional[str] = None,
    ) -> None:
        """``mean(values) > threshold``; e.g. a mean accuracy above twice chance."""
        xs = _numbers(values, "values")
        u = self._u(unit)
        note = f" ({threshold_name})" if threshold_name else ""
        slack, holds = _slack_holds(_mean(xs) - threshold)
        self.add(
            f"{what} > {_g(threshold)}{u}{note}",
            holds,
            _fmt(xs, u.strip()),
            slack,
            values=xs,
            threshold=threshold,
        )

    def mean_below(
        self,
        what: str,
        values,
        threshold: float,
        threshold_name: str = "",
        unit: Optional[str] = None,
    ) -> None:
        """``mean(values) < threshold``; e.g. a failing method stays near chance."""
        xs = _numbers(values, "values")
        u = self._u(unit)
        note = f" ({threshold_name})" if threshold_name else ""
        slack, holds = _slack_holds(threshold - _mean(xs))
        self.add(
            f"{what} < {_g(threshold)}{u}{note}",
            holds,
            _fmt(xs, u.strip()),
            slack,
            values=xs,
            threshold=threshold,
        )

    def mean_exceeds(
        self, a_name: str, a, b_name: str, b, margin: float = 0.0, unit: Optional[str] = None
    ) -> None:
        """``mean(a) > mean(b) + margin``: method A ends above method B by more than ``margin``."""
        xa, xb = _numbers(a, a_name), _numbers(b, b_name)
        u = self._u(unit)
        by = f" by more than {_g(margin)}{u.replace(' %', ' points')}" if margin else ""
        diff = _mean(xa) - _mean(xb)
        slack, holds = _slack_holds(diff - margin)
        self.add(
            f"{a_name} > {b_name}{by}",
            holds,
            f"{a_name} {_fmt(xa, u.strip())}; {b_name} {_fmt(xb, u.strip())}; difference {diff:+.4g}",
            slack,
            a=xa,
            b=xb,
            margin=margin,
        )

    def increasing(
        self,
        what: str,
        labels: Sequence,
        means: Iterable[float],
        min_step: float = 0.0,
        unit: Optional[str] = None,
    ) -> None:
        """Each mean is above the previous one by more than ``min_step``."""
        ms = _numbers(list(means), "means")
        if len(ms) != len(labels) or len(ms) < 2:
            raise ValueError(
                f"labels: expected one label per mean (at least 2), got {len(labels)} labels "
                f"for {len(ms)} means"
            )
        u = self._u(unit)
        steps = [b - a for a, b in zip(ms, ms[1:])]
        by = (
            f" by more than {_g(min_step)}{u.replace(' %', ' points')} per step" if min_step else ""
        )
        shown = ", ".join(f"{lab}: {m:.4g}" for lab, m in zip(labels, ms))
        gaps = [step - min_step for step in steps]
        slack, holds = _slack_holds(float("nan") if any(g != g for g in gaps) else min(gaps))
        self.add(
            f"{what} increases from {labels[0]} to {labels[-1]}{by}",
            holds,
            shown,
            slack,
            means=ms,
            labels=[str(x) for x in labels],
            min_step=min_step,
        )

    def within(
        self, what: str, value: float, low: float, high: float, unit: Optional[str] = None
    ) -> None:
        """``low <= value <= high``."""
        v = _numbers(value, "value")[0]
        u = self._u(unit)
        slack, holds = _slack_holds(min(v - low, high - v) if v == v else v, inclusive=True)
        self.add(
            f"{what} in [{_g(low)}, {_g(high)}]{u}",
            holds,
            f"{v:.6g}{u}",
            slack,
            value=v,
            low=low,
            high=high,
        )

    # -- report ------------------------------------------------------------------------------
    def verify(self) -> None:
        """Print one line per claim; raise :class:`ClaimError` naming every failed one."""
        if not self.claims:
            raise ValueError("Claims.verify: no claims were added")
        log = os.environ.get("STLLR_CLAIMS_LOG")
        if log:
            with open(log, "a") as f:
                for c in self.claims:
                    f.write(json.dumps({"notebook": self.notebook, **asdict(c)}) + "\n")
        failed = [c for c in self.claims if not c.holds]
        for c in self.claims:
            print(("holds: " if c.holds else "DOES NOT HOLD: ") + c.text)
        self.claims = []
        if failed:
            lines = "\n".join(f"  {c.text}: measured {c.measured}" for c in failed)
            raise ClaimError(f"{len(failed)} claim(s) do not hold on this run:\n{lines}")
