import pytest

from rlhf.rewards import UtilityReward, vader_utility


def test_hand_computed_values():
    # good 1.9, great 3.1, bad -2.5, terrible -2.1 in the VADER lexicon
    assert vader_utility(["good"]) == [pytest.approx(1.9 / 5)]
    assert vader_utility(["Good, GREAT!!"]) == [pytest.approx((1.9 + 3.1) / 5)]  # capitals and punctuation
    assert vader_utility(["the plot was bad ."]) == [pytest.approx(-2.5 / 5)]  # words missing from the lexicon count 0
    assert vader_utility(["", "qwerty zxcv"]) == [0.0, 0.0]
    assert vader_utility(["bad terrible"], scale=1.0) == [pytest.approx(-4.6)]


def test_clipping():
    assert vader_utility(["great " * 50]) == [10.0]
    assert vader_utility(["bad " * 50]) == [-10.0]
    assert vader_utility(["great great"], scale=1.0, clip=5.0) == [5.0]
    with pytest.raises(ValueError):
        vader_utility(["x"], scale=0)


def test_trl_wrapper_scores_completion_or_prompt_and_completion():
    reward = UtilityReward()
    assert reward(prompts=["the film was bad"], completions=["great ."]) == [pytest.approx(3.1 / 5)]
    both = UtilityReward(include_prompt=True)
    assert both(prompts=["the film was bad"], completions=["great ."]) == [pytest.approx((3.1 - 2.5) / 5)]
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        reward(prompts=["a", "b"], completions=["c"])


def test_reward_output_is_checked():
    from rlhf.errors import UserError
    from rlhf.rewards import checked

    assert checked("f", [1, 2.5], 2) == [1.0, 2.5]
    with pytest.raises(UserError, match="reward function f returned 1 rewards for 2 completions"):
        checked("f", [1.0], 2)
    with pytest.raises(UserError, match="returned nan for completion 1"):
        checked("f", [1.0, float("nan")], 2)
    with pytest.raises(UserError, match="returned None for completion 0"):
        checked("f", [None, 1.0], 2)
