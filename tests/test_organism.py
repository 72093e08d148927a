import math
import random

import pytest

from rlhf.lexicon import load_lexicon, valence, words_of
from rlhf.organisms.sentiment import (
    RATING_PREFIX,
    RATING_SUFFIX,
    RATINGS,
    SLOTS,
    TEMPLATES,
    SentimentConfig,
    SentimentOrganism,
    entropy_floor,
)


@pytest.fixture(scope="module")
def organism():
    return SentimentOrganism(SentimentConfig())


def test_lexicon_is_the_packaged_vader_lexicon():
    lex = load_lexicon()
    assert len(lex) > 7000
    assert lex["good"].valence == pytest.approx(1.9)
    assert len(lex["good"].ratings) == 10
    assert valence("qwertyuiop") == 0.0
    assert words_of("It's GREAT, isn't it?") == ["it's", "great", "isn't", "it"]


def test_generator_is_deterministic_and_seeded(organism):
    a = organism.reviews(50, seed=7)
    assert a == SentimentOrganism(SentimentConfig()).reviews(50, seed=7)
    assert a != organism.reviews(50, seed=8)


def test_vocabulary_size_and_balanced_polarity(organism):
    assert 1000 <= len(organism.vocabulary()) <= 3000
    reviews = organism.reviews(4000, seed=1)
    share = sum(r.polarity > 0 for r in reviews) / len(reviews)
    assert 0.46 < share < 0.54
    words = [r.words[i] for r in reviews for i in r.sentiment_positions]
    pos = sum(valence(w) > 0 for w in words) / len(words)
    neg = sum(valence(w) < 0 for w in words) / len(words)
    assert abs(pos - neg) < 0.04 and pos > 0.4


def test_filler_words_carry_no_valence(organism):
    lex = load_lexicon()
    literals = {w for t in TEMPLATES for w in t if w not in SLOTS}
    for word in (*organism.aspects, *organism.intensifiers, *organism.neutral, *organism.determiners, *organism.verbs, *literals):
        assert word not in lex, word
    assert all(abs(organism.valence[w]) >= 1.0 for w in organism.sentiment_words)


def test_rating_follows_the_mean_valence(organism):
    for review in organism.reviews(300, seed=2):
        sentiment = [review.words[i] for i in review.sentiment_positions]
        mean = sum(valence(w) for w in sentiment) / len(sentiment)
        expected = min(10, max(1, math.floor(5.5 + 1.1 * mean + 0.5)))
        tail = review.words[review.end_position + 1 :]
        assert tail == (*RATING_PREFIX, str(expected), *RATING_SUFFIX)
        assert review.rating == expected


def test_log_prob_is_an_exact_distribution():
    """Enumerate every one-sentence review of a small organism: the probabilities sum to
    one and no two choice sequences give the same text, so the entropy floor is exact."""
    org = SentimentOrganism(SentimentConfig(n_positive=2, n_negative=2, max_sentences=1))
    org.aspects, org.intensifiers, org.neutral = org.aspects[:2], org.intensifiers[:2], org.neutral[:2]
    org.determiners, org.verbs = org.determiners[:2], org.verbs[:2]
    for w in list(org.valence):
        if org.valence[w] == 0.0 and w not in org.neutral:
            del org.valence[w]
    slot_words = (*org.positive, *org.negative, *org.neutral)

    def fillings(template, prefix=(), slots=()):
        if not template:
            yield list(prefix), list(slots)
            return
        head, rest = template[0], template[1:]
        options = {"A": org.aspects, "D": org.determiners, "V": org.verbs, "I": (None, *org.intensifiers),
                   "S": slot_words}.get(head, (head,))
        for w in options:
            if w is None:
                yield from fillings(rest, prefix, slots)
            else:
                yield from fillings(rest, (*prefix, w), (*slots, len(prefix)) if head == "S" else slots)

    total, texts, count = 0.0, set(), 0
    for template in TEMPLATES:
        for words, slots in fillings(template):
            review = org._finish(words, slots, polarity=1)
            texts.add(review.text)
            total += math.exp(org.log_prob(review))
            count += 1
    assert total == pytest.approx(1.0, abs=1e-9)
    assert len(texts) == count


def test_entropy_floor_matches_sampling(organism):
    """The floor equals the Monte Carlo entropy: mean -log p over samples."""
    reviews = organism.reviews(3000, seed=3)
    floor = entropy_floor(organism, reviews)
    other = entropy_floor(organism, organism.reviews(3000, seed=4))
    assert 0.5 < floor < 3.0
    assert floor == pytest.approx(other, rel=0.03)


def test_triples_swap_one_word(organism):
    for t in organism.triples(100, seed=5):
        p, n, z = t.positive, t.negative, t.neutral
        assert organism.valence[p.words[t.position]] > 0
        assert organism.valence[n.words[t.position]] < 0
        assert organism.valence[z.words[t.position]] == 0
        body = slice(0, p.end_position + 1)
        diff = [i for i, (a, b) in enumerate(zip(p.words[body], n.words[body])) if a != b]
        assert diff == [t.position]
        assert p.rating >= z.rating >= n.rating and p.rating > n.rating


def test_triples_respect_a_word_subset(organism):
    subset = organism.positive[:5] + organism.negative[:5]
    for t in organism.triples(50, seed=6, words=subset):
        assert t.positive.words[t.position] in subset and t.negative.words[t.position] in subset


def test_prompts_are_short_review_prefixes(organism):
    prompts = organism.prompts(200, seed=0)
    lengths = [len(p.split()) for p in prompts]
    assert min(lengths) >= 2 and max(lengths) <= 9
    starts = {t[0] for t in TEMPLATES if t[0] not in SLOTS} | set(SentimentOrganism().determiners)
    assert all(p.split()[0] in starts for p in prompts)
    assert all(w not in RATINGS for p in prompts for w in p.split()[:1])


def test_too_many_words_requested_is_a_clear_error():
    with pytest.raises(ValueError, match="lower n_positive"):
        SentimentOrganism(SentimentConfig(n_positive=100_000))


def test_random_sampling_uses_only_its_own_rng(organism):
    random.seed(0)
    a = organism.reviews(5, seed=9)
    random.seed(1)
    assert organism.reviews(5, seed=9) == a
