"""THE rule that turns a reproduction's measurements into held / did not hold / inconclusive.

A claim "arm A beats arm B" on a metric is judged on the per-seed values of both arms, measured in the same
run:

* effect = mean(A) - mean(B), sign-flipped when lower is better (error, ECE, sharpness), so that a positive
  effect always favours A;
* noise = the standard error of that difference, sqrt(s_A^2 / n_A + s_B^2 / n_B), from the seed-to-seed
  standard deviations s of the arms (an arm with a single seed borrows the pooled deviation of the arms
  that have several);
* margin = max(the margin the report states, 2 x noise);
* held if effect > margin, did not hold if effect < -margin, otherwise inconclusive. With one seed per arm
  there is no noise estimate: without a stated margin the claim is inconclusive.

A parity claim ("A is about as accurate as B", ``about_equal``) holds when the whole band effect +- 2 x noise
lies within the stated tolerance, fails when it lies wholly outside, and is inconclusive otherwise (or
without a noise estimate). ``all_of`` and ``at_least`` combine sub-claims. Every function returns a
``Decision`` that the report carries; ``rederive`` recomputes one from its recorded inputs, so that a test
(or the publisher) can check that a report's verdict is what this rule gives for its numbers.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...errors import ConfigError

OUTCOMES = {True: "held", False: "did not hold", None: "inconclusive"}
LEAF_RULES = ("beats", "about equal", "not worse")


@dataclass
class Decision:
    """A judged claim: the outcome, the numbers it was decided on, and a one-line account of them."""

    claim: str  # what was tested, in a few words
    rule: str  # beats | about equal | not worse | all of | at least
    held: bool | None  # None: inconclusive
    effect: float | None = None  # mean(A) - mean(B), oriented so that positive favours A
    margin: float | None = None  # beats: the band the effect had to clear; parity: the stated tolerance
    noise: float | None = None  # standard error of the difference of means (None: not measurable)
    stated: float = 0.0  # the margin (beats) or tolerance (parity) stated in the report
    seeds: tuple[int, ...] = ()  # seeds per arm (A, B); for combined claims, the fewest of any part
    values: dict[str, list[float]] = field(default_factory=dict)  # per-seed values: {A name: [...], B name: [...]}
    metric: str = ""
    lower_is_better: bool = False
    k: int | None = None  # at least k parts
    parts: list[Decision] = field(default_factory=list)
    text: str = ""

    @property
    def outcome(self) -> str:
        return OUTCOMES[self.held]

    def to_dict(self) -> dict[str, Any]:
        return {"claim": self.claim, "rule": self.rule, "held": self.held, "outcome": self.outcome,
                "effect": self.effect, "margin": self.margin, "noise": self.noise, "stated": self.stated,
                "seeds": list(self.seeds), "values": {k: list(v) for k, v in self.values.items()},
                "metric": self.metric, "lower_is_better": self.lower_is_better, "k": self.k,
                "parts": [p.to_dict() for p in self.parts], "text": self.text}

    def lines(self, indent: str = "") -> list[str]:
        """This decision's text, then its parts', indented (for report.md)."""
        out = [indent + self.text]
        for p in self.parts:
            out += p.lines(indent + "  ")
        return out

    def short(self) -> str:
        """The deciding numbers in a few words (for a table cell)."""
        if self.parts:
            return "; ".join(p.short() for p in self.parts)
        (a, va), (b, vb) = self.values.items()
        seeds = "/".join(str(n) for n in self.seeds)
        if self.margin is None or (self.rule != "beats" and self.noise is None):
            band = "no noise estimate"
        elif self.rule == "beats":
            band = f"needs > {_f(self.margin)}"
        else:
            band = f"+-{_f(2 * self.noise)} within {_f(self.stated)}"
        return (f"{a} {_f(_mean(va))}{_sd_text(va)} vs {b} {_f(_mean(vb))}{_sd_text(vb)}: "
                f"{_signed(self.effect)} ({band}; {seeds} seeds)")


# ------------------------------------------------------------------------------------------- statistics
def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values)


def _sd(values: Sequence[float]) -> float | None:
    return statistics.stdev(values) if len(values) >= 2 else None


def _sd_text(values: Sequence[float]) -> str:
    sd = _sd(values)
    return "" if sd is None else f" +- {_f(sd)}"


def noise_of(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Standard error of mean(a) - mean(b) from the per-arm seed standard deviations; an arm with one seed
    borrows the pooled deviation of the arms with several; None when neither arm has two seeds."""
    known = [v for v in (a, b) if len(v) >= 2]
    if not known:
        return None
    pooled = math.sqrt(sum((len(v) - 1) * _sd(v) ** 2 for v in known) / sum(len(v) - 1 for v in known))
    return math.sqrt(sum((_sd(v) if len(v) >= 2 else pooled) ** 2 / len(v) for v in (a, b)))


def _f(x: float | None) -> str:
    if x is None:
        return "?"
    return f"{x:.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def _signed(x: float | None) -> str:
    return "?" if x is None else ("+" if x >= 0 else "-") + _f(abs(x))


def _check(name: str, values: Sequence[float]) -> list[float]:
    out = [float(v) for v in values]
    if not out:
        raise ConfigError(f"verdicts: arm '{name}' has no values")
    if any(not math.isfinite(v) for v in out):
        raise ConfigError(f"verdicts: arm '{name}' has a non-finite value: {out}")
    return out


# ------------------------------------------------------------------------------------------- the rules
def beats(a: Sequence[float], b: Sequence[float], *, a_name: str = "A", b_name: str = "B", metric: str = "",
          lower_is_better: bool = False, margin: float = 0.0, claim: str | None = None) -> Decision:
    """The claim "A beats B" on ``metric``, from per-seed values: held if the effect exceeds
    max(``margin``, 2 x noise), did not hold if it falls below minus that, else inconclusive."""
    a, b = _check(a_name, a), _check(b_name, b)
    if margin < 0:
        raise ConfigError(f"verdicts: a stated margin must be >= 0, got {margin}")
    effect = (_mean(b) - _mean(a)) if lower_is_better else (_mean(a) - _mean(b))
    noise = noise_of(a, b)
    claim = claim or f"{a_name} beats {b_name}" + (f" on {metric}" if metric else "")
    d = Decision(claim, "beats", None, effect, None, noise, margin, (len(a), len(b)), {a_name: a, b_name: b},
                 metric, lower_is_better)
    if noise is None and margin == 0:
        d.text = f"{claim}: {_arms(d)}; effect {_signed(effect)}, no noise estimate (one seed per arm) -> inconclusive."
        return d
    d.margin = max(margin, 2 * noise) if noise is not None else margin
    d.held = True if effect > d.margin else False if effect < -d.margin else None
    why = ("stated margin" if noise is None else
           f"2 x noise {_f(2 * noise)}" + (f", stated margin {_f(margin)}" if margin else ""))
    d.text = (f"{claim}: {_arms(d)}; effect {_signed(effect)} against a margin of {_f(d.margin)} ({why}) "
              f"-> {d.outcome}.")
    return d


def about_equal(a: Sequence[float], b: Sequence[float], *, tolerance: float, a_name: str = "A", b_name: str = "B",
                metric: str = "", lower_is_better: bool = False, one_sided: bool = False,
                claim: str | None = None) -> Decision:
    """The claim "A is about as good as B": |effect| within ``tolerance`` (``one_sided``: A no worse than B by
    more than ``tolerance``; being better is fine). Held if effect +- 2 x noise lies inside the tolerance,
    did not hold if it lies wholly outside, else inconclusive; without a noise estimate, inconclusive."""
    a, b = _check(a_name, a), _check(b_name, b)
    if tolerance <= 0:
        raise ConfigError(f"verdicts: a parity claim needs a tolerance > 0, got {tolerance}")
    effect = (_mean(b) - _mean(a)) if lower_is_better else (_mean(a) - _mean(b))
    noise = noise_of(a, b)
    rule = "not worse" if one_sided else "about equal"
    what = f"no worse than {b_name} by more than {_f(tolerance)}" if one_sided else f"within {_f(tolerance)} of {b_name}"
    claim = claim or f"{a_name} {what}" + (f" on {metric}" if metric else "")
    d = Decision(claim, rule, None, effect, tolerance, noise, tolerance, (len(a), len(b)), {a_name: a, b_name: b},
                 metric, lower_is_better)
    if noise is None:
        d.text = f"{claim}: {_arms(d)}; effect {_signed(effect)}, no noise estimate (one seed per arm) -> inconclusive."
        return d
    band = 2 * noise
    if one_sided:
        d.held = True if effect - band >= -tolerance else False if effect + band < -tolerance else None
        interval = f"effect - 2 x noise = {_signed(effect - band)} against -{_f(tolerance)}"
    else:
        d.held = (True if abs(effect) + band <= tolerance else False if abs(effect) - band > tolerance else None)
        interval = f"|effect| + 2 x noise = {_f(abs(effect) + band)}, |effect| - 2 x noise = {_f(abs(effect) - band)}"
    d.text = (f"{claim}: {_arms(d)}; effect {_signed(effect)}, noise {_f(noise)} ({interval}; tolerance "
              f"{_f(tolerance)}) -> {d.outcome}.")
    return d


def all_of(parts: Iterable[Decision], claim: str) -> Decision:
    """Every part must hold: held if all held, did not hold if any did not, else inconclusive."""
    parts = list(parts)
    if not parts:
        raise ConfigError("verdicts: all_of needs at least one part")
    held = _combine([p.held for p in parts], len(parts))
    return _combined(claim, "all of", held, parts, None)


def at_least(k: int, parts: Iterable[Decision], claim: str) -> Decision:
    """At least ``k`` of the parts must hold: held once ``k`` held; did not hold once so many did not hold
    that ``k`` cannot be reached; else inconclusive."""
    parts = list(parts)
    if not 1 <= k <= len(parts):
        raise ConfigError(f"verdicts: at_least needs 1 <= k <= {len(parts)} parts, got k={k}")
    held = _combine([p.held for p in parts], k)
    return _combined(claim, "at least", held, parts, k)


def _combine(outcomes: list[bool | None], k: int) -> bool | None:
    if sum(o is True for o in outcomes) >= k:
        return True
    if sum(o is False for o in outcomes) > len(outcomes) - k:
        return False
    return None


def _combined(claim: str, rule: str, held: bool | None, parts: list[Decision], k: int | None) -> Decision:
    deciding = _deciding(parts, held)
    n_held = sum(p.held is True for p in parts)
    n_failed = sum(p.held is False for p in parts)
    need = f"all {len(parts)}" if k is None else f"at least {k} of {len(parts)}"
    text = (f"{claim} ({need} sub-claims must hold): {n_held} held, {n_failed} did not hold, "
            f"{len(parts) - n_held - n_failed} inconclusive -> {OUTCOMES[held]}.")
    return Decision(claim, rule, held, deciding.effect, deciding.margin, deciding.noise, deciding.stated,
                    (min(min(p.seeds) for p in parts if p.seeds),) if any(p.seeds for p in parts) else (),
                    {}, deciding.metric, deciding.lower_is_better, k, parts, text)


def _deciding(parts: list[Decision], held: bool | None) -> Decision:
    """The part whose numbers a one-line summary quotes: the first that did not hold when the whole did
    not; otherwise the one with the least room (effect closest to its margin)."""
    if held is False:
        return next(p for p in parts if p.held is False)
    return min(parts, key=_slack)


def _slack(d: Decision) -> float:
    """How far a part's effect is from tipping its outcome (negative: it did not clear its band)."""
    if d.parts:
        return _slack(_deciding(d.parts, d.held))
    if d.rule == "beats":
        return d.effect - d.margin if d.margin is not None else -math.inf
    if d.noise is None:
        return -math.inf
    if d.rule == "not worse":
        return d.effect - 2 * d.noise + d.stated
    return d.stated - abs(d.effect) - 2 * d.noise


def _arms(d: Decision) -> str:
    (a, va), (b, vb) = d.values.items()
    on = f"{d.metric}: " if d.metric and d.metric not in d.claim else ""
    n = f"{len(va)} seeds each" if len(va) == len(vb) else f"{len(va)} / {len(vb)} seeds"
    if len(va) == len(vb) == 1:
        n = "1 seed each"
    return (f"{on}{a} {_f(_mean(va))}{_sd_text(va)} vs {b} {_f(_mean(vb))}{_sd_text(vb)} "
            f"(mean +- s.d. over {n}{', lower is better' if d.lower_is_better else ''})")


# ------------------------------------------------------------------------------------------- checking
def rederive(record: Mapping[str, Any]) -> Decision:
    """Recompute a decision from its recorded inputs (``Decision.to_dict()``, e.g. from results.json):
    per-seed values, stated margin or tolerance, orientation, and for combined claims the parts and ``k``."""
    rule = record["rule"]
    if rule in ("all of", "at least"):
        parts = [rederive(p) for p in record["parts"]]
        if rule == "all of":
            return all_of(parts, record["claim"])
        return at_least(int(record["k"]), parts, record["claim"])
    if rule not in LEAF_RULES:
        raise ConfigError(f"verdicts: unknown rule '{rule}' in a recorded decision")
    (a_name, a), (b_name, b) = record["values"].items()
    common = dict(a_name=a_name, b_name=b_name, metric=record.get("metric", ""),
                  lower_is_better=bool(record.get("lower_is_better", False)), claim=record["claim"])
    if rule == "beats":
        return beats(a, b, margin=float(record.get("stated", 0.0)), **common)
    return about_equal(a, b, tolerance=float(record["stated"]), one_sided=rule == "not worse", **common)


def consistent(record: Mapping[str, Any], tol: float = 1e-9) -> bool:
    """Whether a recorded decision's outcome and numbers are exactly what the rule gives for its inputs."""
    again = rederive(record)

    def same(x: float | None, y: float | None) -> bool:
        return (x is None and y is None) or (x is not None and y is not None and abs(x - y) <= tol * max(1.0, abs(x)))

    if again.held != record["held"] or not all(same(getattr(again, k), record.get(k)) for k in ("effect", "margin", "noise")):
        return False
    return all(consistent(p, tol) for p in record.get("parts", []))


# ------------------------------------------------------------------------------------------- table helpers
def mean(values: Sequence[float]) -> float:
    """Mean of per-seed values."""
    return _mean(_check("values", values))


def sd(values: Sequence[float]) -> float | None:
    """Seed-to-seed standard deviation (None for a single seed)."""
    return _sd(_check("values", values))


def per_seed(values: Sequence[float], digits: int = 1) -> str:
    """Per-seed values for a table cell: "84.1 / 85.6"."""
    return " / ".join(f"{v:.{digits}f}" for v in values)


def spread(values: Sequence[float], digits: int = 1) -> str:
    """"85.3 +- 1.1" (or just "85.3" for one seed), for a table cell."""
    s = sd(values)
    return f"{mean(values):.{digits}f}" + ("" if s is None else f" +- {s:.{digits}f}")
