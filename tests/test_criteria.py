"""compare --criteria: the pre-registered contrasts, checked against an independent computation, and
the verdict lines the tool writes."""
import itertools
import json
import shutil

import numpy as np
import pytest
import yaml

from conftest import assert_one_line_error, run_cli
from rlsmooth.experiments.report import compare
from test_compare import synthetic_run


def study(root, effect_high, effect_low, seeds=4, rng_seed=0):
    """Two games x two lr levels x baseline / sn_fc; SN adds ``effect_*`` to the baseline's level."""
    rng = np.random.default_rng(rng_seed)
    finals = {}
    for game, lr, variant, seed in itertools.product(("asterix", "breakout"), ("hi", "lo"), ("baseline", "sn_fc"),
                                                     range(seeds)):
        gain = (effect_high if lr == "hi" else effect_low) if variant == "sn_fc" else 0.0
        curve = list(5.0 + gain + rng.normal(0, 1, size=4))
        finals[(game, lr, variant, seed)] = np.mean(curve[-3:])
        d = synthetic_run(root, f"{game}-{lr}-{variant}-{seed}", game, variant, seed, curve, suite="minatar")
        (d / "sweep_cell.json").write_text(json.dumps({"game": game, "lr": lr, "variant": variant, "seed": seed}))
    return finals


CRITERIA = {"score": "last_n", "min_seeds": 4, "criteria": [
    {"name": "did", "treatment": "sn_fc", "axis": "lr", "at": "hi", "versus": "lo"},
    {"name": "did_p", "treatment": "sn_fc", "axis": "lr", "at": "hi", "versus": "lo", "statistic": "probability"},
    {"name": "plain", "treatment": "sn_fc", "axis": "lr", "at": "hi", "statistic": "probability"},
    {"name": "one game", "treatment": "sn_fc", "axis": "lr", "at": "hi", "versus": "lo", "games": ["breakout"]},
]}


def independent(finals, games, stat, versus=True, reps=3000, seed=123):
    """The same contrasts written out with plain loops, and a bootstrap of its own."""
    def cellv(g, lr, v):
        return np.array([x for (gg, ll, vv, _), x in sorted(finals.items()) if (gg, ll, vv) == (g, lr, v)])

    def imp(t, b):
        if stat == "mean":
            return t.mean() - b.mean()
        return np.mean([1.0 if x > y else 0.5 if x == y else 0.0 for x in t for y in b])

    def value(draw):
        per = []
        for g in games:
            v = imp(draw(cellv(g, "hi", "sn_fc")), draw(cellv(g, "hi", "baseline")))
            if versus:
                v -= imp(draw(cellv(g, "lo", "sn_fc")), draw(cellv(g, "lo", "baseline")))
            per.append(v)
        return np.mean(per)
    rng = np.random.default_rng(seed)
    boot = [value(lambda a: rng.choice(a, size=len(a), replace=True)) for _ in range(reps)]
    return value(lambda a: a), np.percentile(boot, [2.5, 97.5])


def test_contrasts_match_an_independent_computation(tmp_path):
    finals = study(tmp_path / "runs", effect_high=3.0, effect_low=0.5)
    path = tmp_path / "criteria.yaml"
    path.write_text(yaml.safe_dump(CRITERIA))
    result = compare([tmp_path / "runs"], tmp_path / "rep", reps=3000, criteria=path)
    got = {r.criterion.name: r for r in result["criteria"]}
    for name, stat, versus, games in (("did", "mean", True, ["asterix", "breakout"]),
                                      ("did_p", "probability", True, ["asterix", "breakout"]),
                                      ("plain", "probability", False, ["asterix", "breakout"]),
                                      ("one game", "mean", True, ["breakout"])):
        estimate, (lo, hi) = independent(finals, games, stat, versus)
        assert got[name].estimate == pytest.approx(estimate, abs=1e-9), name
        width = hi - lo
        assert got[name].interval[0] == pytest.approx(lo, abs=0.1 * width + 1e-9), name
        assert got[name].interval[1] == pytest.approx(hi, abs=0.1 * width + 1e-9), name
    assert got["did"].verdict == "holds" and got["plain"].verdict == "holds"
    lines = [line for line in (tmp_path / "rep" / "report.md").read_text().splitlines() if line.startswith("- **")]
    assert len(lines) == 4 and lines[0].startswith("- **holds**: did: (sn_fc - baseline) at lr=hi minus at lr=lo")


def test_verdicts_hold_fail_and_stay_undecided(tmp_path):
    path = tmp_path / "criteria.yaml"
    path.write_text(yaml.safe_dump(CRITERIA))
    verdicts = {}
    for name, high, low in (("reversed", -3.0, 3.0), ("same gap at both", 2.0, 2.0)):
        study(tmp_path / name, high, low, seeds=6)
        result = compare([tmp_path / name], tmp_path / f"rep-{name}", reps=1000, criteria=path)
        verdicts[name] = {r.criterion.name: r.verdict for r in result["criteria"]}
    assert verdicts["reversed"]["did"] == "fails" and verdicts["reversed"]["plain"] == "fails"
    # a gap of the same size at both levels is no evidence that the gain is the high level's
    assert verdicts["same gap at both"]["did"] != "holds" and verdicts["same gap at both"]["plain"] == "holds"


def test_few_seeds_are_marked_and_bad_criteria_are_one_line(tmp_path):
    study(tmp_path / "runs", 3.0, 0.0, seeds=2)
    path = tmp_path / "criteria.yaml"
    path.write_text(yaml.safe_dump(CRITERIA))
    compare([tmp_path / "runs"], tmp_path / "rep", reps=200, criteria=path)
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "2 seeds per cell: interval unreliable" in text and "fewer than 4 seeds per cell are unreliable" in text
    for bad, needle in (({"criteria": []}, "non-empty list"),
                        ({"criteria": [{"name": "x", "treatment": "sn_fc", "oops": 1}]}, "unknown key 'oops'"),
                        ({"score": "best", "criteria": [{"name": "x", "treatment": "y"}]}, "score must be"),
                        ({"criteria": [{"name": "x", "treatment": "y", "at": "hi"}]}, "levels of an 'axis'")):
        path.write_text(yaml.safe_dump(bad))
        assert_one_line_error(run_cli("compare", tmp_path / "runs", "--out", tmp_path / "bad", "--criteria", path),
                              needle)
        assert not (tmp_path / "bad").exists()   # nothing written on a refusal
    path.write_text(yaml.safe_dump({"criteria": [{"name": "absent", "treatment": "nope", "axis": "lr", "at": "hi"}]}))
    result = compare([tmp_path / "runs"], tmp_path / "rep2", reps=50, criteria=path)
    assert result["criteria"][0].verdict == "undecided" and "not evaluated" in (tmp_path / "rep2" / "report.md").read_text()


def test_one_seed_per_cell_gives_no_verdict(tmp_path):
    study(tmp_path / "runs", 5.0, 0.0, seeds=1)
    path = tmp_path / "criteria.yaml"
    path.write_text(yaml.safe_dump(CRITERIA))
    result = compare([tmp_path / "runs"], tmp_path / "rep", reps=50, criteria=path)
    assert all(r.verdict == "undecided" and "one seed" in r.problem for r in result["criteria"])


def precision_study(root, shift, seeds, rng_seed=1):
    """Two games x baseline x precision fp32 / bf16; bf16 adds ``shift`` to every return."""
    rng = np.random.default_rng(rng_seed)
    finals = {}
    for game, precision, seed in itertools.product(("asterix", "breakout"), ("fp32", "bf16"), range(seeds)):
        curve = list(5.0 + (shift if precision == "bf16" else 0.0) + rng.normal(0, 1, size=4))
        finals[(game, precision, seed)] = curve[-1]
        d = synthetic_run(root, f"{game}-{precision}-{seed}", game, "baseline", seed, curve, suite="minatar")
        (d / "sweep_cell.json").write_text(json.dumps({"game": game, "variant": "baseline", "seed": seed,
                                                       "precision": precision}))
    return finals


ACROSS_LEVELS = {"score": "last_n", "min_seeds": 4, "criteria": [
    {"name": "bf16 as fp32", "treatment": "baseline", "axis": "precision", "at": "bf16", "baseline_at": "fp32",
     "statistic": "probability", "score": "final", "equivalent_within": [0.3, 0.7]},
    {"name": "bf16 minus fp32", "treatment": "baseline", "axis": "precision", "at": "bf16", "baseline_at": "fp32",
     "score": "final", "equivalent_within": [-1.0, 1.0]},
]}


def test_one_variant_across_levels_matches_an_independent_computation(tmp_path):
    """P(bf16 > fp32) and the mean difference of one variant's final scores, pooled over games, against
    plain loops and a bootstrap of their own; equivalence verdicts on no shift and on a large one."""
    path = tmp_path / "criteria.yaml"
    path.write_text(yaml.safe_dump(ACROSS_LEVELS))
    finals = precision_study(tmp_path / "same", shift=0.0, seeds=30)
    result = compare([tmp_path / "same"], tmp_path / "rep", reps=2000, criteria=path)
    got = {r.criterion.name: r for r in result["criteria"]}

    def cellv(game, precision):
        return np.array([x for (g, p, _), x in sorted(finals.items()) if (g, p) == (game, precision)])

    def pooled(draw, stat):
        per = []
        for game in ("asterix", "breakout"):
            t, b = draw(cellv(game, "bf16")), draw(cellv(game, "fp32"))
            per.append(t.mean() - b.mean() if stat == "mean" else
                       np.mean([1.0 if x > y else 0.5 if x == y else 0.0 for x in t for y in b]))
        return np.mean(per)
    rng = np.random.default_rng(7)
    for name, stat in (("bf16 as fp32", "probability"), ("bf16 minus fp32", "mean")):
        boot = [pooled(lambda a: rng.choice(a, size=len(a)), stat) for _ in range(1000)]
        lo, hi = np.percentile(boot, [2.5, 97.5])
        assert got[name].estimate == pytest.approx(pooled(lambda a: a, stat), abs=1e-9), name
        assert got[name].interval == pytest.approx((lo, hi), abs=0.1 * (hi - lo)), name
        assert got[name].verdict == "holds", name    # 30 seeds with no shift: inside both margins
    text = (tmp_path / "rep" / "report.md").read_text()
    assert ("baseline at precision=bf16 against baseline at precision=fp32, P(precision=bf16 > precision=fp32) of the final "
            "evaluation = ") in text and "no difference detected" in text

    precision_study(tmp_path / "shifted", shift=4.0, seeds=8)
    result = compare([tmp_path / "shifted"], tmp_path / "rep2", reps=500, criteria=path)
    assert [r.verdict for r in result["criteria"]] == ["fails", "fails"]
    assert "a difference detected" in (tmp_path / "rep2" / "report.md").read_text()


def test_bad_level_contrasts_are_one_line(tmp_path):
    precision_study(tmp_path / "runs", shift=0.0, seeds=2)
    path = tmp_path / "criteria.yaml"
    base = {"name": "x", "treatment": "baseline", "axis": "precision", "at": "bf16", "baseline_at": "fp32"}
    for bad, needle in (({**base, "versus": "fp32"}, "do not go together"),
                        ({"name": "x", "treatment": "baseline"}, "name the baseline's level with 'baseline_at'"),
                        ({**base, "equivalent_within": [0.6, 0.4]}, "low < high"),
                        ({**base, "equivalent_within": [0.1, 0.2]}, "must contain 0"),
                        ({**base, "equivalent_within": [-1, 1], "holds_above": 0}, "replaces holds_above"),
                        ({**base, "score": "best"}, "score must be one of")):
        path.write_text(yaml.safe_dump({"criteria": [bad]}))
        assert_one_line_error(run_cli("compare", tmp_path / "runs", "--out", tmp_path / "bad", "--criteria", path),
                              needle)
        assert not (tmp_path / "bad").exists()


def test_a_game_missing_some_cells_is_not_evaluated_and_its_empty_cells_are_named(tmp_path):
    study(tmp_path / "runs", 3.0, 0.0, seeds=2)
    for d in (tmp_path / "runs").glob("breakout-lo-*"):
        shutil.rmtree(d)   # breakout has runs at the high level only, as a study part-way through a game
    path = tmp_path / "criteria.yaml"
    path.write_text(yaml.safe_dump(CRITERIA))
    result = compare([tmp_path / "runs"], tmp_path / "rep", reps=50, criteria=path)
    got = {r.criterion.name: r for r in result["criteria"]}
    assert got["one game"].verdict == "undecided"
    assert got["one game"].problem == "no runs for breakout (sn_fc at lr=lo, baseline at lr=lo)"
    # without 'games' the contrast reads the games that have every cell; the plain one reads both
    assert got["did"].criterion.games is None and got["did"].games == ["asterix"]
    assert got["plain"].games == ["asterix", "breakout"]
