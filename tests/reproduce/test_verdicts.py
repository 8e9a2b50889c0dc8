"""The verdict rule of the reproduction kit, on synthetic numbers: every branch, and the cases that a
sign-only rule (A's mean above B's -> held) gets wrong."""
from __future__ import annotations

import json
import math
import statistics

import pytest

from paperzoo.errors import ConfigError
from paperzoo.reproduce._kit.verdicts import (about_equal, all_of, at_least, beats, consistent, noise_of,
                                              rederive)


def se(a: list[float], b: list[float]) -> float:
    return math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))


def test_clear_win_over_seeds_holds_with_the_numbers_of_the_rule() -> None:
    a, b = [80.0, 81.0, 82.0], [70.0, 72.0, 71.0]
    d = beats(a, b, a_name="SE", b_name="plain", metric="test acc (%)")
    assert d.held is True and d.outcome == "held"
    assert d.effect == pytest.approx(10.0)
    assert d.noise == pytest.approx(se(a, b)) and d.margin == pytest.approx(2 * se(a, b))
    assert d.seeds == (3, 3)
    assert "SE 81 +- 1 vs plain 71 +- 1" in d.text and "+10" in d.text and "held" in d.text


def test_inverted_comparison_did_not_hold() -> None:
    d = beats([70.0, 72.0, 71.0], [80.0, 81.0, 82.0])
    assert d.held is False and d.outcome == "did not hold" and d.effect == pytest.approx(-10.0)


def test_tiny_one_seed_gap_is_inconclusive() -> None:
    """A 0.4-point difference of single runs: a sign-only rule would call it held."""
    d = beats([85.4], [85.0])
    assert d.held is None and d.noise is None and d.margin is None
    assert "no noise estimate" in d.text
    assert beats([85.0], [85.4]).held is None  # and the other way round: not "did not hold" either


def test_gap_within_seed_noise_is_inconclusive() -> None:
    a, b = [84.0, 86.0, 85.5], [85.0, 83.0, 85.2]  # means 85.17 vs 84.4: +0.77 against 2 x noise ~ 1.8
    d = beats(a, b)
    assert 0 < d.effect < d.margin and d.held is None
    assert beats(b, a).held is None


def test_lower_is_better_flips_the_effect() -> None:
    err_a, err_b = [10.0, 11.0, 10.5], [20.0, 21.0, 19.0]
    d = beats(err_a, err_b, metric="test error (%)", lower_is_better=True)
    assert d.effect == pytest.approx(statistics.mean(err_b) - statistics.mean(err_a)) and d.held is True
    assert beats(err_b, err_a, lower_is_better=True).held is False
    assert beats(err_a, err_b).held is False  # read the wrong way round, lower error "loses"


def test_stated_margin_decides_single_seed_runs() -> None:
    assert beats([90.0], [85.0], margin=3.0).held is True
    assert beats([85.0], [90.0], margin=3.0).held is False
    d = beats([87.0], [85.0], margin=3.0)
    assert d.held is None and d.margin == 3.0 and "stated margin" in d.text


def test_stated_margin_wider_than_the_noise_wins() -> None:
    a, b = [86.0, 86.2], [85.0, 85.2]  # effect 1.0, 2 x noise ~ 0.28
    assert beats(a, b).held is True
    d = beats(a, b, margin=2.0)
    assert d.margin == 2.0 and d.held is None


def test_noise_is_twice_counted_not_once() -> None:
    """An effect between one and two standard errors is not enough."""
    a, b = [81.0, 79.0, 80.0, 82.0], [80.0, 78.0, 79.0, 81.0]  # effect 1.0, s.e. 0.91
    d = beats(a, b)
    assert d.noise < d.effect < 2 * d.noise and d.held is None


def test_one_seed_arm_borrows_the_pooled_deviation() -> None:
    a, b = [80.0], [70.0, 72.0, 74.0]
    s = statistics.stdev(b)
    assert noise_of(a, b) == pytest.approx(math.sqrt(s * s / 1 + s * s / 3))
    assert noise_of([1.0], [2.0]) is None


def test_about_equal_two_sided() -> None:
    tight_a, tight_b = [90.0, 90.4, 90.2], [90.5, 90.3, 90.7]
    d = about_equal(tight_a, tight_b, tolerance=2.0)
    assert d.held is True and d.margin == 2.0 and d.rule == "about equal"
    far = about_equal([80.0, 80.4, 80.2], tight_b, tolerance=2.0)
    assert far.held is False  # 10 points apart
    better = about_equal([99.0, 99.2, 99.4], tight_b, tolerance=2.0)
    assert better.held is False  # two-sided: much better is not "about equal"
    noisy = about_equal([84.0, 96.0], [88.0, 92.0], tolerance=2.0)
    assert noisy.held is None  # the band effect +- 2 x noise straddles the tolerance
    assert about_equal([90.0], [90.1], tolerance=2.0).held is None  # no noise estimate: a tolerance is not one


def test_about_equal_one_sided_accepts_better() -> None:
    b = [90.5, 90.3, 90.7]
    assert about_equal([99.0, 99.2, 99.4], b, tolerance=2.0, one_sided=True).held is True
    assert about_equal([80.0, 80.4, 80.2], b, tolerance=2.0, one_sided=True).held is False
    assert about_equal([88.0, 89.5, 87.0], b, tolerance=2.0, one_sided=True).held is None  # -2.3 +- 1.5 straddles -2


def test_all_of_combines() -> None:
    yes = beats([80.0, 81.0], [70.0, 71.0])
    no = beats([70.0, 71.0], [80.0, 81.0])
    maybe = beats([80.0], [79.5])
    assert all_of([yes, yes], "both").held is True
    assert all_of([yes, no, maybe], "all").held is False
    assert all_of([yes, maybe], "all").held is None
    combined = all_of([yes, no], "ordering")
    assert combined.effect == no.effect and combined.parts == [yes, no]  # quotes the part that failed


def test_at_least_combines() -> None:
    yes = beats([80.0, 81.0], [70.0, 71.0])
    no = beats([70.0, 71.0], [80.0, 81.0])
    maybe = beats([80.0], [79.5])
    assert at_least(3, [yes, yes, yes, maybe], "3 of 4").held is True
    assert at_least(3, [yes, yes, no, no], "3 of 4").held is False  # 3 cannot be reached any more
    assert at_least(3, [yes, yes, no, maybe], "3 of 4").held is None
    with pytest.raises(ConfigError):
        at_least(5, [yes], "too many")


def test_recorded_decisions_are_rederived_and_tampering_is_caught() -> None:
    parts = [beats([80.0, 81.0], [70.0, 71.0], a_name="x", b_name="y"),
             about_equal([90.0, 90.4], [90.2, 90.6], tolerance=2.0), beats([85.4], [85.0])]
    record = json.loads(json.dumps(at_least(2, parts, "claim").to_dict()))  # through JSON, as results.json stores it
    assert rederive(record).held == record["held"] and consistent(record)
    flipped = dict(record, held=not record["held"])
    assert not consistent(flipped)
    edited = json.loads(json.dumps(record))
    edited["parts"][0]["values"]["x"] = [70.0, 71.0]  # the numbers no longer support "held"
    assert not consistent(edited)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ConfigError):
        beats([], [1.0])
    with pytest.raises(ConfigError):
        beats([float("nan")], [1.0])
    with pytest.raises(ConfigError):
        beats([1.0], [2.0], margin=-1)
    with pytest.raises(ConfigError):
        about_equal([1.0, 2.0], [1.0, 2.0], tolerance=0)
