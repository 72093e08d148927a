"""The sentiment model organism: a seeded generator of short movie reviews.

Every review is a few template sentences, each with one sentiment slot filled from the
VADER lexicon, and ends with ``rating : R / 10 .`` where R is a function of the mean
valence of its sentiment words. The rating is what makes a word's valence predictable
from its context: a language model has to represent each word's valence to predict
the rating, so the base model carries sentiment the way a real pretrained LM does.

The generator is a left-to-right process whose choices are all visible in the text
(the first word of a sentence names its template, slot vocabularies are disjoint), so
a text's probability is the product of its choices' probabilities, summed over the one
hidden variable (the review's polarity). That gives the exact entropy of the corpus:
the floor for any language model's loss on it.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rlhf.config import SentimentConfig  # noqa: F401  (re-exported: callers import it from here)
from rlhf.lexicon import load_lexicon
from rlhf.results import CorpusResult, SplitStats
from rlhf.rundir import RunDir, atomic_write_json, atomic_write_text, read_json, split_file

# Sentence templates: tuples of literal words and slots. "D" determiner, "A" aspect,
# "V" verb, "I" optional intensifier, "S" sentiment word. Every template has one D, A,
# V and I slot. Templates differ in a literal word before they could be confused, and
# slot words never appear as literals, so the template is visible from the text. The
# determiner and verb slots keep sentences from sharing fixed bigrams, so repetition
# measures a policy's degeneration rather than its choice of template; the two- and
# three-slot templates give a policy room to pack in sentiment.
TEMPLATES: tuple[tuple[str, ...], ...] = (
    ("D", "A", "V", "I", "S", "."),
    ("i", "thought", "D", "A", "V", "I", "S", "."),
    ("overall", "D", "A", "V", "I", "S", "."),
    ("D", "A", "V", "I", "S", "and", "S", "."),
    ("D", "A", "V", "I", "S", ",", "S", "and", "S", "."),
)
SLOTS = ("D", "A", "V", "I", "S")
RATING_PREFIX = ("rating", ":")
RATING_SUFFIX = ("/", "10", ".")

ASPECTS = (
    "acting", "plot", "script", "ending", "soundtrack", "cinematography", "dialogue",
    "pacing", "cast", "direction", "story", "characters", "visuals", "editing", "score",
    "lead", "sequel", "premise", "finale", "setting", "lighting", "costumes", "villain",
    "camera", "runtime", "screenplay", "plotline", "narrator", "director", "film",
    "movie", "performance", "effects", "opening",
)
DETERMINERS = ("the", "this", "that", "its", "their", "our")
VERBS = ("was", "is", "felt", "seemed", "looked", "proved", "remained", "became")
INTENSIFIERS = ("very", "quite", "rather", "truly", "really", "somewhat", "fairly", "so")
# Sentiment-slot words with no VADER valence: the neutral variant of a sentence.
NEUTRAL_WORDS = (
    "long", "short", "french", "recent", "quiet", "loud", "modern", "old", "new",
    "early", "late", "british", "silent", "slow", "fast", "plain", "average", "typical",
    "normal", "usual", "big", "small", "simple", "complex", "familiar", "different",
    "historical", "musical", "visual", "verbal", "local", "foreign", "urban", "rural",
    "technical", "formal", "casual", "literal", "digital", "classical", "regional",
    "vertical", "nocturnal", "seasonal", "linear", "minimal", "medium", "standard",
    "grey", "square",
)
RATINGS = tuple(str(r) for r in range(1, 11))


@dataclass(frozen=True)
class Review:
    words: tuple[str, ...]
    sentiment_positions: tuple[int, ...]  # indices into words
    polarity: int  # +1 or -1, the hidden variable
    rating: int

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def end_position(self) -> int:
        """Index of the last word before the rating (the review's final full stop)."""
        return len(self.words) - len(RATING_PREFIX) - 1 - len(RATING_SUFFIX) - 1


@dataclass(frozen=True)
class Triple:
    """One sentence in a positive, a negative and a neutral variant of one slot."""

    positive: Review
    negative: Review
    neutral: Review
    position: int  # index of the swapped word in each review's words


@dataclass
class SentimentOrganism:
    """The generator: word pools drawn from the lexicon, sampling, exact log-probabilities."""

    cfg: SentimentConfig = field(default_factory=SentimentConfig)

    def __post_init__(self) -> None:
        lex = load_lexicon()
        fixed = {w for t in TEMPLATES for w in t if w not in SLOTS}
        fixed |= set(RATING_PREFIX) | set(RATING_SUFFIX) | set(RATINGS)
        closed = set(ASPECTS) | set(INTENSIFIERS) | set(NEUTRAL_WORDS) | set(DETERMINERS) | set(VERBS) | fixed
        # Words with lexicon valence would leak sentiment into "neutral" text.
        self.aspects = tuple(sorted({w for w in ASPECTS if w not in lex}))
        self.intensifiers = tuple(sorted({w for w in INTENSIFIERS if w not in lex}))
        self.neutral = tuple(sorted({w for w in NEUTRAL_WORDS if w not in lex}))
        self.determiners, self.verbs = DETERMINERS, VERBS
        candidates = sorted(
            w for w, e in lex.items()
            if w.isalpha() and w.islower() and abs(e.valence) >= self.cfg.min_abs_valence and w not in closed
        )
        rng = random.Random(self.cfg.seed)
        pos = [w for w in candidates if lex[w].valence > 0]
        neg = [w for w in candidates if lex[w].valence < 0]
        if len(pos) < self.cfg.n_positive or len(neg) < self.cfg.n_negative:
            raise ValueError(
                f"the lexicon has {len(pos)} positive and {len(neg)} negative words with "
                f"|valence| >= {self.cfg.min_abs_valence}; lower n_positive/n_negative"
            )
        self.positive = tuple(sorted(rng.sample(pos, self.cfg.n_positive)))
        self.negative = tuple(sorted(rng.sample(neg, self.cfg.n_negative)))
        self.valence = {w: lex[w].valence for w in self.positive + self.negative}
        self.valence.update({w: 0.0 for w in self.neutral})

    # -- vocabulary -----------------------------------------------------------------
    @property
    def sentiment_words(self) -> tuple[str, ...]:
        return self.positive + self.negative

    def vocabulary(self) -> list[str]:
        """Every word the generator can emit, in a fixed order."""
        words: list[str] = []
        for t in TEMPLATES:
            words += [w for w in t if w not in SLOTS]
        words += [*RATING_PREFIX, *RATING_SUFFIX, *RATINGS, *self.determiners, *self.verbs]
        words += [*self.aspects, *self.intensifiers, *self.neutral, *self.positive, *self.negative]
        return list(dict.fromkeys(words))

    # -- sampling ---------------------------------------------------------------------
    def rating(self, sentiment_words: list[str] | tuple[str, ...]) -> int:
        mean = sum(self.valence[w] for w in sentiment_words) / len(sentiment_words)
        return int(min(10, max(1, math.floor(5.5 + 1.1 * mean + 0.5))))

    def _sentiment_word(self, rng: random.Random, polarity: int) -> str:
        if rng.random() < self.cfg.p_neutral:
            return rng.choice(self.neutral)
        on = rng.random() < self.cfg.p_on_polarity
        pool = self.positive if (polarity > 0) == on else self.negative
        return rng.choice(pool)

    def sample_review(self, rng: random.Random, n_sentences: int | None = None) -> Review:
        polarity = rng.choice((1, -1))
        k = n_sentences or rng.randint(1, self.cfg.max_sentences)
        words: list[str] = []
        slots: list[int] = []
        for _ in range(k):
            for w in rng.choice(TEMPLATES):
                if w == "D":
                    words.append(rng.choice(self.determiners))
                elif w == "V":
                    words.append(rng.choice(self.verbs))
                elif w == "A":
                    words.append(rng.choice(self.aspects))
                elif w == "I":
                    if rng.random() < self.cfg.p_intensifier:
                        words.append(rng.choice(self.intensifiers))
                elif w == "S":
                    slots.append(len(words))
                    words.append(self._sentiment_word(rng, polarity))
                else:
                    words.append(w)
        return self._finish(words, slots, polarity)

    def _finish(self, words: list[str], slots: list[int], polarity: int) -> Review:
        rating = self.rating([words[i] for i in slots])
        words = [*words, *RATING_PREFIX, str(rating), *RATING_SUFFIX]
        return Review(tuple(words), tuple(slots), polarity, rating)

    def with_word(self, review: Review, position: int, word: str) -> Review:
        """The same review with the sentiment word at ``position`` replaced (rating recomputed)."""
        if position not in review.sentiment_positions:
            raise ValueError(f"position {position} is not a sentiment slot of {review.text!r}")
        body = list(review.words[: review.end_position + 1])
        body[position] = word
        return self._finish(body, list(review.sentiment_positions), review.polarity)

    def reviews(self, n: int, seed: int, n_sentences: int | None = None) -> list[Review]:
        rng = random.Random(seed)
        return [self.sample_review(rng, n_sentences) for _ in range(n)]

    def triples(self, n: int, seed: int, words: tuple[str, ...] | None = None) -> list[Triple]:
        """Contrastive triples of one-sentence reviews; the swapped words come from ``words``
        (default: the whole vocabulary of each polarity)."""
        rng = random.Random(seed)
        pos = [w for w in (words or self.positive) if self.valence.get(w, 0) > 0]
        neg = [w for w in (words or self.negative) if self.valence.get(w, 0) < 0]
        out = []
        for _ in range(n):
            review = self.sample_review(rng, n_sentences=1)
            p = review.sentiment_positions[0]
            out.append(Triple(
                self.with_word(review, p, rng.choice(pos)),
                self.with_word(review, p, rng.choice(neg)),
                self.with_word(review, p, rng.choice(self.neutral)),
                p,
            ))
        return out

    def prompts(self, n: int, seed: int, min_words: int = 2, max_words: int = 9) -> list[str]:
        """Review prefixes of 2-9 words: the prompts an RL policy completes."""
        rng = random.Random(seed)
        out = []
        for _ in range(n):
            words = self.sample_review(rng).words
            out.append(" ".join(words[: rng.randint(min_words, min(max_words, len(words) - 1))]))
        return out

    # -- exact probabilities ------------------------------------------------------------
    def _word_logp(self, word: str, polarity: int) -> float:
        c = self.cfg
        if word in self.valence and self.valence[word] == 0.0:
            return math.log(c.p_neutral / len(self.neutral))
        agrees = (self.valence[word] > 0) == (polarity > 0)
        pool = self.positive if self.valence[word] > 0 else self.negative
        return math.log((1 - c.p_neutral) * (c.p_on_polarity if agrees else 1 - c.p_on_polarity) / len(pool))

    def log_prob(self, review: Review) -> float:
        """Exact log-probability of the review's text under the generator (nats)."""
        c = self.cfg
        k = review.words[: review.end_position + 1].count(".")  # sentences; one D, A, V and I slot each
        per_sentence = len(TEMPLATES) * len(self.aspects) * len(self.determiners) * len(self.verbs)
        logp = -math.log(c.max_sentences) - k * math.log(per_sentence)
        n_int = sum(w in self.intensifiers for w in review.words)
        logp += n_int * math.log(c.p_intensifier / len(self.intensifiers))
        logp += (k - n_int) * math.log(1 - c.p_intensifier)
        words = [review.words[i] for i in review.sentiment_positions]
        per_polarity = [math.log(0.5) + sum(self._word_logp(w, s) for w in words) for s in (1, -1)]
        top = max(per_polarity)
        return logp + top + math.log(sum(math.exp(x - top) for x in per_polarity))


def entropy_floor(organism: SentimentOrganism, reviews: list[Review]) -> float:
    """Mean nats per predicted token (every word plus the end-of-text token): the lowest
    loss any language model can reach on text from this generator."""
    total = -sum(organism.log_prob(r) for r in reviews)
    return total / sum(len(r.words) + 1 for r in reviews)


def write_corpus(cfg: SentimentConfig, out_dir: Path) -> CorpusResult:
    """Write train/val/test review texts, the word lists and the entropy floor; return the stats."""
    organism = SentimentOrganism(cfg)
    splits = {"train": (cfg.n_train, cfg.seed * 1000 + 1), "val": (cfg.n_val, cfg.seed * 1000 + 2),
              "test": (cfg.n_test, cfg.seed * 1000 + 3)}
    stats: dict[str, SplitStats] = {}
    for name, (n, seed) in splits.items():
        reviews = organism.reviews(n, seed)
        atomic_write_text(split_file(out_dir, name), "\n".join(r.text for r in reviews) + "\n")
        stats[name] = SplitStats(reviews=n, tokens=sum(len(r.words) + 1 for r in reviews),
                                 positive_share=sum(r.polarity > 0 for r in reviews) / n,
                                 entropy_floor=entropy_floor(organism, reviews))
    atomic_write_json(out_dir / "words.json", {"valence": organism.valence, "vocabulary": organism.vocabulary()})
    atomic_write_json(out_dir / ORGANISM_FILE, asdict(cfg))
    return CorpusResult(source="organism", vocabulary_size=len(organism.vocabulary()), **stats)


ORGANISM_FILE = "organism.json"


def load_organism(run_dir: RunDir) -> SentimentOrganism:
    """The generator that wrote a study's corpus, rebuilt from its saved config. A study on
    a real dataset has none: it gets the default organism, whose sentences then serve as
    probe text with a known valence per word."""
    path = run_dir.corpus / ORGANISM_FILE
    return SentimentOrganism(SentimentConfig(**read_json(path)) if path.exists() else SentimentConfig())
