"""The digits organism's grammar: outputs follow the rule, the likelihood is exact, pairs differ in the first digit."""

import itertools
import math
import random

import pytest

from rlhf.organisms.digits import DigitsConfig, DigitsOrganism, DigitsSequence, choices, preferred_first


def test_every_output_is_the_increment_of_one_of_the_last_four_digits():
    organism = DigitsOrganism(DigitsConfig(n_output=8))
    for seq in organism.sequences(500, seed=1):
        assert len(seq.inputs) == 4 and len(seq.outputs) == 8
        history = list(seq.inputs)
        for y in seq.outputs:
            assert any((d + 1) % 10 == y for d in history[-4:])
            history.append(y)
        assert organism.log_prob(seq) > -math.inf
        assert seq.text == " ".join(map(str, seq.inputs)) + " | " + " ".join(map(str, seq.outputs))


def test_the_likelihood_is_exact():
    organism = DigitsOrganism(DigitsConfig(n_output=3))
    inputs = (6, 1, 7, 0)
    probs = [math.exp(organism.log_prob(DigitsSequence(inputs, o))) for o in itertools.product(range(10), repeat=3)]
    assert sum(probs) == pytest.approx(1.0)
    assert organism.log_prob(DigitsSequence(inputs, (5, 5, 5))) == -math.inf  # 5 is no increment of 6, 1, 7, 0
    # 1 from [7, 2, 8, 1]; 2 from [2, 8, 1, 2] (after 1, 7, 0, 1: twice); 8 from [8, 1, 2, 3]
    assert math.exp(organism.log_prob(DigitsSequence(inputs, (1, 2, 8)))) == pytest.approx(1 / 4 * 2 / 4 * 1 / 4)
    # The sampler agrees: the first output is 7 (the increment of the first input, 6) a quarter of the time.
    rng = random.Random(0)
    firsts = [organism.continue_from(inputs, [], rng)[0] for _ in range(20_000)]
    assert firsts.count(7) / len(firsts) == pytest.approx(0.25, abs=0.015)


def test_base_rate_of_the_preferred_first_digit():
    organism = DigitsOrganism()
    assert organism.first_correct_rate((6, 1, 7, 0)) == 0.25
    assert organism.first_correct_rate((0, 1, 0, 0)) == 0.75  # the last digit appears three times
    rates = [organism.first_correct_rate(s.inputs) for s in organism.sequences(5000, seed=2)]
    assert sum(rates) / len(rates) == pytest.approx(0.25 + 3 * 0.1 / 4, abs=0.01)  # each earlier digit repeats it w.p. 0.1


def test_preference_pairs_differ_only_in_the_first_digit():
    organism = DigitsOrganism()
    for pair in organism.preference_pairs(300, seed=3):
        inputs = tuple(int(d) for d in pair["prompt"].split()[:-1])
        chosen, rejected = pair["chosen"].split(), pair["rejected"].split()
        assert pair["prompt"].endswith("|") and chosen[1:] == rejected[1:]
        assert int(chosen[0]) == preferred_first(inputs) != int(rejected[0])
        if set(choices(inputs)) - {preferred_first(inputs)}:
            assert int(rejected[0]) in choices(inputs)  # a digit the base rule could have produced
