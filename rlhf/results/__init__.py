"""The typed results of the rlhf stages, one light module per stage (no torch import: the report
and the command lines load these), re-exported here."""

from __future__ import annotations

from rlhf.results.conversion import ConversionResult, ConvertedModel
from rlhf.results.corpus import CorpusResult, SplitStats
from rlhf.results.digits import (
    DigitsAttention,
    DigitsExample,
    DigitsMeasure,
    DigitsResult,
    DigitsRewardModel,
    DigitsSample,
    DigitsSFT,
    digits_run,
)
from rlhf.results.dpo import DPOExample, DPOResult
from rlhf.results.hidden_context import (
    CategoricalDistribution,
    HiddenContextResult,
    PerWordFit,
    RewardModelFit,
    WordSpreads,
)
from rlhf.results.policy import Curve, NoKLResult, PolicyEvaluation, PolicyResult, PolicySample
from rlhf.results.pretrain import PretrainResult
from rlhf.results.sft import SFTResult, SFTSample

__all__ = ['CategoricalDistribution', 'ConversionResult', 'ConvertedModel', 'CorpusResult', 'Curve', 'DPOExample', 'DPOResult', 'DigitsAttention', 'DigitsExample', 'DigitsMeasure', 'DigitsResult', 'DigitsRewardModel', 'DigitsSFT', 'DigitsSample', 'HiddenContextResult', 'NoKLResult', 'PerWordFit', 'PolicyEvaluation', 'PolicyResult', 'PolicySample', 'PretrainResult', 'RewardModelFit', 'SFTResult', 'SFTSample', 'SplitStats', 'WordSpreads', 'digits_run']
