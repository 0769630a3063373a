"""Word2vec (Lecture III): skip-gram and CBOW with negative sampling, with gensim's names and
semantics, and ``KeyedVectors``-like access to the vectors.

The model is two tables: the input vectors, the weights of an :class:`~gpudl.layers.Embedding`
(``wv.vectors`` reads them), and the output vectors ``syn1neg`` (gensim's name). Each training
pair scores an input vector against its true word and ``negative`` words drawn from the
unigram distribution raised to ``ns_exponent``; its loss is
:func:`gpudl.functional.negative_sampling_loss`.

What follows gensim 4 (``models/word2vec.py``, ``word2vec_inner.pyx``) exactly:

- the vocabulary: words with at least ``min_count`` occurrences (or the count that keeps
  ``max_final_vocab`` words), sorted by descending count, ties in gensim's order;
- subsampling: word ``w`` with count ``c`` is kept with probability
  ``(sqrt(c / t) + 1) * t / c`` (at most 1), ``t = sample * (retained words)``, compared as
  gensim does against a 32-bit random number (``sample_int``);
- the negative-sampling table (``cum_table``, ``2**31 - 1`` wide) and the draw from it;
- the reduced window: each centre word gets an effective window ``window - r``, ``r``
  uniform in ``[0, window)``, and windows never cross sentences;
- skip-gram predicts the centre word from each context word's vector; CBOW predicts it from
  the mean (``cbow_mean=1``) or sum of the context vectors, and, like gensim and the original
  C code, hands the undivided error to each context vector for the mean and the error
  divided by the window's size for the sum;
- jobs of at most ``batch_words`` words, each with one learning rate, falling linearly from
  ``alpha`` to ``min_alpha`` over all epochs (by sentences done, as gensim's constructor
  does), effective words per job capped at 10000;
- the starting vectors: gensim's draw for the same ``seed`` (uniform in [-1, 1) / vector_size
  from ``numpy.random.default_rng(seed)``), output vectors zeros.

Where it differs: the sigmoid is computed exactly, where gensim reads a 1000-entry table and
skips a pair's update once its score passes ±6; subsampling, windows and negative draws take
their own random stream (gensim's 48-bit LCG, seeded per job from ``seed``: with one worker a
seeded run repeats exactly), so runs agree with gensim's in distribution, not number for
number. gensim's defaults ``sg=0``, ``seed=1`` and
``workers=3`` are ``sg=1`` (Lecture III's skip-gram), ``seed=0`` and ``workers=1`` here.

The training step: on NumPy, a Numba-compiled loop updates both tables pair by pair (plain SGD
per pair, gensim's rule: the gradient of the op's loss for one pair, applied at once);
``workers > 1`` runs jobs on that many threads without locks (Hogwild, as gensim's threads
do), which makes results depend on thread timing. On CuPy, a job's pairs are drawn on the
host with the same rules and trained in mini-batches of ``batch_pairs``, the op's kernels
applying each batch's summed pair gradients (``gpudl.kernels.word2vec``; a sample equal to
its pair's word is drawn again there, where gensim drops it).
"""
from __future__ import annotations

import math
import numbers
import os
import time
from collections.abc import Iterable

import numpy as np
from numba import njit, prange

from . import backend
from .autograd import Tensor

__all__ = ["Word2Vec", "KeyedVectors", "MAX_WORDS_IN_BATCH"]

#: gensim's cap on the effective words of one job (``MAX_SENTENCE_LEN``)
MAX_WORDS_IN_BATCH = 10000
#: width of the negative-sampling table (gensim's ``make_cum_table`` domain)
CUM_TABLE_DOMAIN = 2**31 - 1

_MUL = np.uint64(25214903917)
_ADD = np.uint64(11)
_MASK = np.uint64(281474976710655)
_S16 = np.uint64(16)


# ---- the Numba training loop ------------------------------------------------------------------

@njit(cache=True, nogil=True)
def _lcg(state):
    return (state * _MUL + _ADD) & _MASK


@njit(cache=True, nogil=True)
def _draw(cum_table, state):
    """A word from the unigram^ns_exponent table, and the next state (gensim's draw)."""
    top = np.uint64(cum_table[cum_table.shape[0] - 1])
    t = np.searchsorted(cum_table, (state >> _S16) % top)
    return t, _lcg(state)


@njit(cache=True, nogil=True, fastmath=True)
def _ns_update(h, syn1, target, negative, cum_table, alpha, work, state):
    """One pair's SGD on the SGNS loss for input vector ``h``: updates the output rows at once
    and adds ``-alpha * dloss/dh`` to ``work``. Returns the RNG state."""
    dims = h.shape[0]
    for d in range(negative + 1):
        if d == 0:
            t = target
            label = np.float32(1.0)
        else:
            t, state = _draw(cum_table, state)
            if t == target:
                continue
            label = np.float32(0.0)
        out = syn1[t]
        f = np.float32(0.0)
        for a in range(dims):
            f += h[a] * out[a]
        if f >= 0:
            s = np.float32(1.0) / (np.float32(1.0) + np.exp(-f))
        else:
            e = np.exp(f)
            s = e / (np.float32(1.0) + e)
        g = np.float32((label - s) * alpha)
        # one pass: the error takes the output row as it was before this update, as in gensim
        for a in range(dims):
            o = out[a]
            work[a] += g * o
            out[a] = o + g * h[a]
    return state


@njit(cache=True, nogil=True)
def _job_words(words, sent_starts, s0, s1, sample_int, use_sample, state, idx, bounds):
    """The job's kept words (subsampled, capped at MAX_WORDS_IN_BATCH) into ``idx`` and the
    sentence boundaries into ``bounds``: (words, sentences, state)."""
    n = 0
    nb = 0
    bounds[0] = 0
    for s in range(s0, s1):
        if sent_starts[s + 1] == sent_starts[s]:
            continue
        for p in range(sent_starts[s], sent_starts[s + 1]):
            w = words[p]
            if use_sample:
                r = state >> _S16
                state = _lcg(state)
                if np.uint64(sample_int[w]) < r:
                    continue
            idx[n] = w
            n += 1
            if n == idx.shape[0]:
                break
        nb += 1
        bounds[nb] = n
        if n == idx.shape[0]:
            break
    return n, nb, state


@njit(cache=True, nogil=True)
def _context_windows(nb, bounds, window, state, spans):
    """Each word's context [spans[i, 0], spans[i, 1]): gensim's per-word window shrink
    r in [0, window), drawn from the LCG in word order, cut to the word's sentence (bounds of
    the job's nb sentences); returns the advanced state."""
    for si in range(nb):
        start = bounds[si]
        end = bounds[si + 1]
        for i in range(start, end):
            r = np.int64((state >> _S16) % np.uint64(window))
            state = _lcg(state)
            spans[i, 0] = max(start, i - window + r)
            spans[i, 1] = min(end, i + window + 1 - r)
    return state


@njit(cache=True, nogil=True, fastmath=True)
def _train_job(syn0, syn1, words, sent_starts, s0, s1, sample_int, use_sample, cum_table,
               window, negative, sg, cbow_mean, alpha, state, idx, bounds, spans, work, neu1):
    """gensim's ``train_batch_sg`` / ``train_batch_cbow`` with negative sampling, for the
    sentences s0..s1. Returns (effective words, state)."""
    n, nb, state = _job_words(words, sent_starts, s0, s1, sample_int, use_sample, state, idx, bounds)
    state = _context_windows(nb, bounds, window, state, spans)
    dims = syn0.shape[1]
    for i in range(n):
        lo, hi = spans[i, 0], spans[i, 1]
        if sg:
            for j in range(lo, hi):
                if j == i:
                    continue
                row = syn0[idx[j]]
                work[:] = 0
                state = _ns_update(row, syn1, idx[i], negative, cum_table, alpha, work, state)
                for a in range(dims):
                    row[a] += work[a]
        else:
            neu1[:] = 0
            count = 0
            for j in range(lo, hi):
                if j != i:
                    count += 1
                    row = syn0[idx[j]]
                    for a in range(dims):
                        neu1[a] += row[a]
            if count == 0:
                continue
            if cbow_mean:
                inv = np.float32(1.0 / count)
                for a in range(dims):
                    neu1[a] *= inv
            work[:] = 0
            state = _ns_update(neu1, syn1, idx[i], negative, cum_table, alpha, work, state)
            if not cbow_mean:
                inv = np.float32(1.0 / count)
                for a in range(dims):
                    work[a] *= inv
            for j in range(lo, hi):
                if j != i:
                    row = syn0[idx[j]]
                    for a in range(dims):
                        row[a] += work[a]
    return n, state


@njit(cache=True, nogil=True)
def _train_jobs(syn0, syn1, words, sent_starts, job_sents, job_alpha, job_seed, sample_int,
                use_sample, cum_table, window, negative, sg, cbow_mean):
    """Every job in order on this thread; the total of effective words."""
    dims = syn0.shape[1]
    idx = np.empty(MAX_WORDS_IN_BATCH, np.int32)
    bounds = np.empty(MAX_WORDS_IN_BATCH + 1, np.int64)
    spans = np.empty((MAX_WORDS_IN_BATCH, 2), np.int64)
    work = np.empty(dims, syn0.dtype)
    neu1 = np.empty(dims, syn0.dtype)
    total = 0
    for j in range(job_alpha.shape[0]):
        n, _ = _train_job(syn0, syn1, words, sent_starts, job_sents[j], job_sents[j + 1], sample_int,
                          use_sample, cum_table, window, negative, sg, cbow_mean, job_alpha[j],
                          job_seed[j], idx, bounds, spans, work, neu1)
        total += n
    return total


@njit(cache=True, nogil=True, parallel=True)
def _train_jobs_parallel(syn0, syn1, words, sent_starts, job_sents, job_alpha, job_seed, sample_int,
                         use_sample, cum_table, window, negative, sg, cbow_mean):
    """The jobs spread over Numba's threads, sharing the tables without locks (Hogwild)."""
    dims = syn0.shape[1]
    counts = np.zeros(job_alpha.shape[0], np.int64)
    for j in prange(job_alpha.shape[0]):
        idx = np.empty(MAX_WORDS_IN_BATCH, np.int32)
        bounds = np.empty(MAX_WORDS_IN_BATCH + 1, np.int64)
        spans = np.empty((MAX_WORDS_IN_BATCH, 2), np.int64)
        work = np.empty(dims, syn0.dtype)
        neu1 = np.empty(dims, syn0.dtype)
        n, _ = _train_job(syn0, syn1, words, sent_starts, job_sents[j], job_sents[j + 1], sample_int,
                          use_sample, cum_table, window, negative, sg, cbow_mean, job_alpha[j],
                          job_seed[j], idx, bounds, spans, work, neu1)
        counts[j] = n
    return counts.sum()


@njit(cache=True, nogil=True)
def _job_pairs(words, sent_starts, s0, s1, sample_int, use_sample, cum_table, window, negative,
               sg, state):
    """The training pairs of one job as arrays, drawn with ``_train_job``'s rules (the
    mini-batch form the GPU path trains on): (input ids (P, M) with -1 padding, targets (P,),
    negatives (P, K), effective words, state). A sample equal to its target is drawn again
    (gensim drops it, which a fixed-shape batch cannot), unless the vocabulary has one word."""
    idx = np.empty(MAX_WORDS_IN_BATCH, np.int32)
    bounds = np.empty(MAX_WORDS_IN_BATCH + 1, np.int64)
    n, nb, state = _job_words(words, sent_starts, s0, s1, sample_int, use_sample, state, idx, bounds)
    spans = np.empty((n, 2), np.int64)
    state = _context_windows(nb, bounds, window, state, spans)
    m = 1 if sg else 2 * window
    cap = n * 2 * window if sg else n
    inputs = np.full((cap, m), -1, np.int32)
    targets = np.empty(cap, np.int32)
    p = 0
    for i in range(n):
        lo, hi = spans[i, 0], spans[i, 1]
        if sg:
            for j in range(lo, hi):
                if j != i:
                    inputs[p, 0] = idx[j]
                    targets[p] = idx[i]
                    p += 1
        elif hi - lo > 1:
            c = 0
            for j in range(lo, hi):
                if j != i:
                    inputs[p, c] = idx[j]
                    c += 1
            targets[p] = idx[i]
            p += 1
    single = cum_table.shape[0] == 1
    negs = np.empty((p, negative), np.int32)
    for q in range(p):
        for k in range(negative):
            t, state = _draw(cum_table, state)
            while t == targets[q] and not single:
                t, state = _draw(cum_table, state)
            negs[q, k] = t
    return inputs[:p], targets[:p], negs, n, state


# ---- argument checks ----------------------------------------------------------------------------

def _int_at_least(name, value, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"Word2Vec expected an integer {name} >= {low}, got {value!r} "
                        f"({type(value).__name__})")
    if value < low:
        raise ValueError(f"Word2Vec expected {name} >= {low}, got {value}")
    return int(value)


def _float_in(name, value, low, high=None, low_open=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"Word2Vec expected a number for {name}, got {value!r} ({type(value).__name__})")
    value = float(value)
    bad = not math.isfinite(value) or (value <= low if low_open else value < low) or \
        (high is not None and value > high)
    if bad:
        rng = f"{'(' if low_open else '['}{low}, {high if high is not None else 'inf'}"
        rng += "]" if high is not None else ")"
        raise ValueError(f"Word2Vec expected {name} in {rng}, got {value}")
    return value


def _check_corpus(sentences):
    """A restartable iterable of token lists, or a TypeError saying what came instead."""
    if isinstance(sentences, (str, bytes)):
        raise TypeError("Word2Vec expected sentences as an iterable of token lists "
                        "(e.g. [['the', 'cat'], ['a', 'dog']]), got one "
                        f"{type(sentences).__name__}: split it into sentences of words first")
    if not isinstance(sentences, Iterable):
        raise TypeError(f"Word2Vec expected sentences as an iterable of token lists, got "
                        f"{type(sentences).__name__}")
    if iter(sentences) is sentences:
        raise TypeError("Word2Vec expected a restartable iterable of sentences (a list, or an "
                        f"object whose __iter__ starts over), got a one-pass {type(sentences).__name__}: "
                        "training reads the corpus once per epoch; pass list(...) of it")
    return sentences


def _tokens(sentence, number):
    if isinstance(sentence, (str, bytes)):
        raise TypeError(f"Word2Vec expected each sentence to be a list of tokens, got sentence "
                        f"{number} as a {type(sentence).__name__} ({sentence[:40]!r}): split it "
                        "into words (sentence.split())")
    if not isinstance(sentence, Iterable):
        raise TypeError(f"Word2Vec expected each sentence to be a list of tokens, got sentence "
                        f"{number} as {type(sentence).__name__}")
    return sentence


def _resolve_backend(name):
    if name is None:
        return backend.get_backend()
    if name not in backend.BACKENDS:
        raise ValueError(f"Word2Vec expected backend in {backend.BACKENDS} or None (the active one), "
                         f"got {name!r}")
    if name == "auto":
        return "cupy" if backend.cupy_available() else "numpy"
    if name == "cupy":
        backend.to_backend(np.zeros(1), "cupy")  # BackendUnavailableError saying what is missing
    return name


def _scipy_stats():
    try:
        from scipy import stats  # noqa: PLC0415
    except ImportError:
        raise ImportError("evaluate_word_pairs needs SciPy for its correlations: pip install "
                          "'gpudl[embeddings]' (gensim brings SciPy) or pip install scipy") from None
    return stats


# ---- the vectors --------------------------------------------------------------------------------

class KeyedVectors:
    """Words and their vectors, gensim's ``KeyedVectors`` in the parts Lecture III uses.

    ``vectors`` is a host (NumPy) array read from the table given (a Word2Vec model's
    Embedding weights, current as training goes, or a plain array)."""

    def __init__(self, index_to_key, vectors):
        self.index_to_key = list(index_to_key)
        self.key_to_index = {w: i for i, w in enumerate(self.index_to_key)}
        self._table = vectors
        n = self.vectors.shape[0]
        if n != len(self.index_to_key):
            raise ValueError(f"KeyedVectors expected one vector per word ({len(self.index_to_key)}), "
                             f"got {n}")

    @property
    def vectors(self) -> np.ndarray:
        t = self._table
        return backend.to_numpy(t.data if isinstance(t, Tensor) else t)

    @property
    def vector_size(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self):
        return len(self.index_to_key)

    def __contains__(self, word):
        return word in self.key_to_index

    def has_index_for(self, word):
        return word in self.key_to_index

    def get_index(self, word):
        try:
            return self.key_to_index[word]
        except (KeyError, TypeError):
            raise KeyError(f"word {word!r} not in the vocabulary of {len(self)} words") from None

    def get_vector(self, word, norm=False):
        v = self.vectors[self.get_index(word)].copy()
        if norm:
            n = np.linalg.norm(v)
            v = v / n if n else v
        return v

    def __getitem__(self, words):
        if isinstance(words, str):
            return self.get_vector(words)
        return np.stack([self.get_vector(w) for w in words])

    def _unit(self):
        v = self.vectors
        norms = np.linalg.norm(v, axis=1)
        return v, norms

    def similarity(self, a, b):
        """Cosine similarity of two words."""
        va, vb = self.get_vector(a, norm=True), self.get_vector(b, norm=True)
        return float(np.dot(va, vb))

    def _mean(self, positive, negative, lookup):
        """gensim's ``get_mean_vector``: unit vectors weighted +1 / -1, averaged, then unit."""
        items = [(p, 1.0) for p in positive] + [(n, -1.0) for n in negative]
        if not items:
            raise ValueError("most_similar expected at least one positive or negative word, got none")
        mean = np.zeros(self.vector_size, dtype=self.vectors.dtype)
        exclude = []
        for key, weight in items:
            if isinstance(key, np.ndarray):
                mean += weight * key
                continue
            i = lookup(key)
            exclude.append(i)
            v = self.vectors[i]
            n = np.linalg.norm(v)
            mean += weight * (v / n if n else v)
        mean = mean / len(items)
        n = np.linalg.norm(mean)
        return (mean / n if n else mean), exclude

    def _nearest(self, vectors, norms, mean, exclude, topn):
        with np.errstate(invalid="ignore", divide="ignore"):
            dists = vectors @ mean / norms
        order = np.argsort(-dists, kind="stable")[:topn + len(exclude)]
        drop = set(exclude)
        return [(int(i), float(dists[i])) for i in order if int(i) not in drop][:topn]

    def most_similar(self, positive=(), negative=(), topn=10, restrict_vocab=None):
        """gensim's 3CosAdd: the words nearest (cosine) to the mean of the positive words'
        unit vectors minus the negative ones', excluding the words asked about."""
        if isinstance(positive, (str, np.ndarray)):
            positive = [positive]
        if isinstance(negative, (str, np.ndarray)):
            negative = [negative]
        topn = _int_at_least("topn", topn, 1) if topn is not None else None
        mean, exclude = self._mean(list(positive), list(negative), self.get_index)
        v, norms = self._unit()
        if restrict_vocab is not None:
            v, norms = v[:restrict_vocab], norms[:restrict_vocab]
        if topn is None:
            with np.errstate(invalid="ignore", divide="ignore"):
                return v @ mean / norms
        return [(self.index_to_key[i], s) for i, s in self._nearest(v, norms, mean, exclude, topn)]

    def _ok_vocab(self, restrict_vocab, case_insensitive):
        keys = self.index_to_key[:restrict_vocab]
        if case_insensitive:
            # the first (most frequent) spelling of a word wins, as in gensim
            return {k.upper(): self.key_to_index[k] for k in reversed(keys)}
        return {k: self.key_to_index[k] for k in reversed(keys)}

    def evaluate_word_pairs(self, pairs, delimiter="\t", encoding="utf8", restrict_vocab=300000,
                            case_insensitive=True, dummy4unknown=False):
        """gensim's ``evaluate_word_pairs``: ((pearson, p), (spearman, p), oov_ratio in %)
        between a file's similarity judgements (``word1<delimiter>word2<delimiter>score``,
        ``#`` comments) and the model's cosine similarities."""
        ok = self._ok_vocab(restrict_vocab, case_insensitive)
        gold, model, oov = [], [], 0
        v = self.vectors
        with open(os.fspath(pairs), encoding=encoding) as fin:
            for line in fin:
                if not line or line.startswith("#"):
                    continue
                try:
                    parts = line.split(delimiter)
                    if case_insensitive:
                        parts = [p.upper() for p in parts]
                    a, b, sim = parts
                    sim = float(sim)
                except (ValueError, TypeError):
                    continue
                if a not in ok or b not in ok:
                    oov += 1
                    if dummy4unknown:
                        model.append(0.0)
                        gold.append(sim)
                    continue
                va, vb = v[ok[a]], v[ok[b]]
                gold.append(sim)
                model.append(float(np.dot(va / np.linalg.norm(va), vb / np.linalg.norm(vb))))
        if not gold:
            raise ValueError(f"evaluate_word_pairs found no pair of known words in {pairs}: expected "
                             f"lines 'word1{delimiter!r}word2{delimiter!r}score' with words among the "
                             f"{len(ok)} of the vocabulary, got {oov} out-of-vocabulary pairs")
        stats = _scipy_stats()
        spearman = stats.spearmanr(gold, model)
        pearson = stats.pearsonr(gold, model)
        total = len(gold) if dummy4unknown else len(gold) + oov
        return ((float(pearson[0]), float(pearson[1])), (float(spearman[0]), float(spearman[1])),
                100.0 * oov / total)

    def evaluate_word_analogies(self, analogies, restrict_vocab=300000, case_insensitive=True,
                                dummy4unknown=False):
        """gensim's ``evaluate_word_analogies`` on a ``questions-words.txt``-style file:
        (accuracy, sections), each section ``{'section', 'correct', 'incorrect'}`` and a last
        ``'Total accuracy'``. Questions with a word outside the first ``restrict_vocab`` words
        are skipped (or counted wrong with ``dummy4unknown``)."""
        ok = self._ok_vocab(restrict_vocab, case_insensitive)
        v, norms = self._unit()
        v, norms = v[:restrict_vocab], norms[:restrict_vocab]
        unit = v / np.where(norms > 0, norms, 1)[:, None]
        sections, section = [], None
        path = os.fspath(analogies)
        with open(path, "rb") as fin:
            for line_no, raw_line in enumerate(fin):
                line = raw_line.decode("utf8")
                if line.startswith(": "):
                    if section:
                        sections.append(section)
                    section = {"section": line.lstrip(": ").strip(), "correct": [], "incorrect": []}
                    continue
                if not section:
                    raise ValueError(f"evaluate_word_analogies expected a ': section' header before "
                                     f"line {line_no} of {path}, got {line.strip()!r}")
                words = line.split()
                if len(words) != 4:
                    continue
                if case_insensitive:
                    words = [w.upper() for w in words]
                a, b, c, expected = words
                if any(w not in ok for w in words):
                    if dummy4unknown:
                        section["incorrect"].append((a, b, c, expected))
                    continue
                ia, ib, ic = ok[a], ok[b], ok[c]
                mean = unit[ib] + unit[ic] - unit[ia]
                mean = mean / 3
                n = np.linalg.norm(mean)
                mean = mean / n if n else mean
                predicted = None
                for i, _ in self._nearest(v, norms, mean, [ia, ib, ic], 5):
                    word = self.index_to_key[i]
                    predicted = word.upper() if case_insensitive else word
                    if predicted in ok and predicted not in (a, b, c):
                        break
                (section["correct"] if predicted == expected else section["incorrect"]).append(
                    (a, b, c, expected))
        if section:
            sections.append(section)
        total = {"section": "Total accuracy",
                 "correct": [q for s in sections for q in s["correct"]],
                 "incorrect": [q for s in sections for q in s["incorrect"]]}
        done = len(total["correct"]) + len(total["incorrect"])
        score = len(total["correct"]) / done if done else 0.0
        sections.append(total)
        return score, sections

    # ---- the word2vec text format ---------------------------------------------------------------
    def save_word2vec_format(self, path):
        """The original word2vec text format: a ``count dims`` header, then ``word v1 v2 ...``
        per line; written atomically (a crash leaves the old file or the new one)."""
        from .io import write_atomically
        v = self.vectors
        for w in self.index_to_key:
            if not w or any(ch.isspace() for ch in w):
                raise ValueError(f"save_word2vec_format expected words without whitespace, got {w!r}")
        lines = [f"{v.shape[0]} {v.shape[1]}\n"]
        lines += [w + " " + " ".join(repr(float(x)) for x in row) + "\n"
                  for w, row in zip(self.index_to_key, v.astype(np.float32))]
        data = "".join(lines).encode("utf8")

        def write(fd):
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        write_atomically(os.fspath(path), write)

    @classmethod
    def load_word2vec_format(cls, path, binary=False):
        """Vectors from the word2vec text format (``binary=False`` only)."""
        if binary:
            raise ValueError("load_word2vec_format reads the text format: expected binary=False, got True")
        path = os.fspath(path)
        with open(path, encoding="utf8") as fin:
            header = fin.readline().split()
            if len(header) != 2 or not all(h.isdigit() for h in header):
                raise ValueError(f"{path}: expected a header line 'count dims', got {' '.join(header)!r}")
            count, dims = int(header[0]), int(header[1])
            words, rows = [], []
            for n, line in enumerate(fin, start=2):
                parts = line.rstrip("\n").split(" ")
                if len(parts) != dims + 1:
                    raise ValueError(f"{path} line {n}: expected a word and {dims} numbers, got "
                                     f"{len(parts) - 1} fields after the word")
                words.append(parts[0])
                rows.append(np.asarray(parts[1:], dtype=np.float32))
        if len(words) != count:
            raise ValueError(f"{path}: the header promises {count} vectors, the file has {len(words)}")
        return cls(words, np.stack(rows) if rows else np.zeros((0, dims), np.float32))


# ---- the model ----------------------------------------------------------------------------------

class Word2Vec:
    """Skip-gram (``sg=1``) or CBOW (``sg=0``) with negative sampling; gensim's arguments and
    meanings (see the module doc). ``sentences``: a restartable iterable of token lists; given,
    the vocabulary is built and the model trained at once. ``workers=1`` (the default) makes
    seeded runs repeat exactly; ``backend``: "numpy", "cupy", "auto" or None (the active one);
    ``batch_pairs``: training pairs per mini-batch on CuPy (on gensim's head500 corpus 1024
    pairs train as well as pair-by-pair SGD, 4096 lose 0.05 of WordSim-353 Spearman, a whole
    10000-word job of about 50000 pairs 0.3)."""

    def __init__(self, sentences=None, vector_size=100, window=5, min_count=5, sg=1, negative=5,
                 epochs=5, seed=0, alpha=0.025, min_alpha=0.0001, sample=1e-3, ns_exponent=0.75,
                 cbow_mean=1, max_final_vocab=None, workers=1, batch_words=MAX_WORDS_IN_BATCH,
                 backend=None, batch_pairs=1024):
        self.vector_size = _int_at_least("vector_size", vector_size, 1)
        self.window = _int_at_least("window", window, 1)
        self.min_count = _int_at_least("min_count", min_count, 1)
        if sg not in (0, 1) or isinstance(sg, float):
            raise ValueError(f"Word2Vec expected sg=1 (skip-gram) or sg=0 (CBOW), got {sg!r}")
        self.sg = int(sg)
        self.negative = _int_at_least("negative", negative, 1)
        self.epochs = _int_at_least("epochs", epochs, 1)
        self.seed = _int_at_least("seed", seed, 0)
        self.alpha = _float_in("alpha", alpha, 0.0, low_open=True)
        self.min_alpha = _float_in("min_alpha", min_alpha, 0.0, self.alpha)
        self.sample = _float_in("sample", sample, 0.0)
        self.ns_exponent = _float_in("ns_exponent", ns_exponent, -math.inf)
        if cbow_mean not in (0, 1) or isinstance(cbow_mean, float):
            raise ValueError(f"Word2Vec expected cbow_mean=1 (mean) or 0 (sum), got {cbow_mean!r}")
        self.cbow_mean = int(cbow_mean)
        self.max_final_vocab = (None if max_final_vocab is None
                                else _int_at_least("max_final_vocab", max_final_vocab, 1))
        self.workers = _int_at_least("workers", workers, 1)
        self.batch_words = _int_at_least("batch_words", batch_words, 1)
        self.batch_pairs = _int_at_least("batch_pairs", batch_pairs, 1)
        self.backend = _resolve_backend(backend)
        self.wv = None
        self.embedding = None
        self.syn1neg = None
        self._corpus = None
        self.train_seconds = 0.0
        self.words_per_second = None
        if sentences is not None:
            self.build_vocab(sentences)
            self.train()

    # ---- vocabulary -----------------------------------------------------------------------------
    def _scan(self, sentences):
        counts = {}
        raw_lengths = []
        for number, sentence in enumerate(_check_corpus(sentences)):
            n = 0
            for token in _tokens(sentence, number):
                counts[token] = counts.get(token, 0) + 1
                n += 1
            raw_lengths.append(n)
        return counts, raw_lengths

    def build_vocab(self, sentences):
        """Count words, keep those reaching ``min_count`` (sorted by descending count, gensim's
        tie order), set the subsampling thresholds and the negative-sampling table, and
        initialise the tables (input vectors uniform in [-1, 1) / vector_size as gensim draws
        them, output vectors zeros)."""
        counts, raw_lengths = self._scan(sentences)
        if not counts:
            raise ValueError("Word2Vec expected a corpus with at least one word, got "
                             f"{len(raw_lengths)} sentences and no words")
        min_count = self.min_count
        if self.max_final_vocab is not None:
            ranked = sorted(counts.values(), reverse=True)
            calc = ranked[self.max_final_vocab] + 1 if self.max_final_vocab < len(ranked) else 1
            min_count = max(calc, min_count)
        self.effective_min_count = min_count
        kept = [(w, c) for w, c in counts.items() if c >= min_count]
        if not kept:
            top_word, top = max(counts.items(), key=lambda kv: kv[1])
            raise ValueError(f"Word2Vec found no word occurring at least min_count={min_count} times: "
                             f"the most frequent word, {top_word!r}, occurs {top} times in "
                             f"{sum(counts.values())} words; lower min_count to at most {top}")
        kcounts = np.array([c for _, c in kept], dtype=np.int64)
        order = np.lexsort((-np.arange(len(kept)), -kcounts))  # gensim's sort_by_descending_frequency
        self.index_to_key = [kept[i][0] for i in order]
        self.counts = kcounts[order]
        self._make_sample_ints()
        self._make_cum_table()
        self.corpus_count = len(raw_lengths)
        self.corpus_total_words = int(sum(raw_lengths))
        self._init_tables()
        self._corpus = self._encode(sentences)
        return self

    def _make_sample_ints(self):
        retain_total = int(self.counts.sum())
        if not self.sample:
            threshold = retain_total
        elif self.sample < 1.0:
            threshold = self.sample * retain_total
        else:
            threshold = int(self.sample * (3 + np.sqrt(5)) / 2)
        c = self.counts.astype(np.float64)
        prob = np.minimum((np.sqrt(c / threshold) + 1) * (threshold / c), 1.0)
        self.keep_probabilities = prob
        self.sample_int = (prob * (2**32 - 1)).astype(np.uint32)

    def _make_cum_table(self):
        powered = self.counts.astype(np.float64) ** float(self.ns_exponent)
        # a running float sum, rounded step by step, as gensim's loop does
        cumulative = np.cumsum(powered)
        self.cum_table = np.array([round(x) for x in cumulative / cumulative[-1] * CUM_TABLE_DOMAIN],
                                  dtype=np.uint32)

    def _init_tables(self):
        from .layers import Embedding
        v, d = len(self.index_to_key), self.vector_size
        # gensim's prep_vectors: uniform in [-1, 1) / vector_size from default_rng(seed), so a
        # seed gives the very starting vectors gensim's gives
        init = np.random.default_rng(seed=self.seed).random((v, d), dtype=np.float32)
        init *= 2.0
        init -= 1.0
        init /= d
        self.embedding = Embedding(v, d, name="word2vec_input")
        self.embedding(Tensor._wrap(backend.to_backend(np.zeros(1, np.int64), self.backend)))
        self.embedding.embeddings.data = backend.to_backend(init, self.backend)
        self.syn1neg = backend.to_backend(np.zeros((v, d), np.float32), self.backend)
        self.wv = KeyedVectors(self.index_to_key, self.embedding.embeddings)

    def _encode(self, sentences):
        """(word ids of known words, sentence starts into them, raw sentence lengths)."""
        index = {w: i for i, w in enumerate(self.index_to_key)}
        ids, starts, raw = [], [0], []
        for number, sentence in enumerate(_check_corpus(sentences)):
            n = 0
            for token in _tokens(sentence, number):
                n += 1
                i = index.get(token)
                if i is not None:
                    ids.append(i)
            starts.append(len(ids))
            raw.append(n)
        return (np.array(ids, dtype=np.int32), np.array(starts, dtype=np.int64),
                np.array(raw, dtype=np.int64))

    def keep_probability(self, word):
        """The probability that subsampling keeps one occurrence of ``word``."""
        return float(self.keep_probabilities[self.wv.get_index(word)])

    # ---- training -------------------------------------------------------------------------------
    def _jobs(self, raw, epoch, epochs, start_alpha, end_alpha):
        """gensim's job producer: (sentence boundaries of the jobs, each job's learning rate)."""
        def rate(done):
            progress = (epoch + done / len(raw)) / epochs
            return max(end_alpha, start_alpha - (start_alpha - end_alpha) * progress)

        bounds, alphas = [0], []
        size, alpha = 0, rate(0)
        for s, n in enumerate(raw):
            if size + n <= self.batch_words:
                size += n
                continue
            if s > bounds[-1]:
                bounds.append(s)
                alphas.append(alpha)
                alpha = rate(s)
            size = n
        if len(raw) > bounds[-1]:
            bounds.append(len(raw))
            alphas.append(alpha)
        return np.array(bounds, dtype=np.int64), np.array(alphas, dtype=np.float64)

    def train(self, sentences=None, epochs=None, start_alpha=None, end_alpha=None):
        """Train on ``sentences`` (default: the corpus given to build_vocab) for ``epochs``;
        returns (effective words trained, raw words), as gensim's ``train``."""
        if self.wv is None:
            if sentences is None:
                raise ValueError("Word2Vec.train expected a vocabulary: call build_vocab(sentences) "
                                 "first or pass sentences to Word2Vec(...)")
            self.build_vocab(sentences)
        corpus = self._corpus if sentences is None else self._encode(sentences)
        epochs = self.epochs if epochs is None else _int_at_least("epochs", epochs, 1)
        start_alpha = (self.alpha if start_alpha is None
                       else _float_in("start_alpha", start_alpha, 0.0, low_open=True))
        end_alpha = self.min_alpha if end_alpha is None else _float_in("end_alpha", end_alpha, 0.0)
        words, starts, raw = corpus
        rng = np.random.default_rng([self.seed, getattr(self, "_train_calls", 0)])
        self._train_calls = getattr(self, "_train_calls", 0) + 1
        effective = 0
        t0 = time.perf_counter()
        for epoch in range(epochs):
            job_sents, job_alpha = self._jobs(raw, epoch, epochs, start_alpha, end_alpha)
            seeds = rng.integers(0, 2**48, len(job_alpha), dtype=np.uint64)
            if self.backend == "cupy":
                effective += self._train_epoch_device(words, starts, job_sents, job_alpha, seeds)
            else:
                effective += self._train_epoch_host(words, starts, job_sents, job_alpha, seeds)
        if self.backend == "cupy":
            backend.synchronize()
        self.train_seconds = time.perf_counter() - t0
        raw_words = int(raw.sum()) * epochs
        self.words_per_second = raw_words / self.train_seconds if self.train_seconds > 0 else float("inf")
        return effective, raw_words

    def _args(self):
        return (self.sample_int, bool(self.sample), self.cum_table, self.window, self.negative,
                bool(self.sg), bool(self.cbow_mean))

    def _train_epoch_host(self, words, starts, job_sents, job_alpha, seeds):
        syn0 = self.embedding.embeddings.data
        if self.workers == 1 or len(job_alpha) == 1:
            return int(_train_jobs(syn0, self.syn1neg, words, starts, job_sents, job_alpha, seeds,
                                   *self._args()))
        import numba  # noqa: PLC0415
        old = numba.get_num_threads()
        numba.set_num_threads(min(self.workers, numba.config.NUMBA_NUM_THREADS))
        try:
            return int(_train_jobs_parallel(syn0, self.syn1neg, words, starts, job_sents, job_alpha,
                                            seeds, *self._args()))
        finally:
            numba.set_num_threads(old)

    def _train_epoch_device(self, words, starts, job_sents, job_alpha, seeds):
        """Each job's pairs in mini-batches of ``batch_pairs``: the op's kernels, summed pair
        gradients, the job's rate."""
        from .kernels import word2vec as K
        syn0 = self.embedding.embeddings.data
        xp = backend.get_array_module(syn0)
        total = 0
        for j in range(len(job_alpha)):
            inputs, targets, negs, n, _ = _job_pairs(words, starts, job_sents[j], job_sents[j + 1],
                                                     self.sample_int, bool(self.sample), self.cum_table,
                                                     self.window, self.negative, bool(self.sg),
                                                     np.uint64(seeds[j]))
            total += n
            if not len(targets):
                continue
            job_ids, job_t, job_ng = xp.asarray(inputs), xp.asarray(targets), xp.asarray(negs)
            lr = -float(job_alpha[j])
            for b0 in range(0, len(targets), self.batch_pairs):
                b1 = b0 + self.batch_pairs
                ids, t, ng = job_ids[b0:b1], job_t[b0:b1], job_ng[b0:b1]
                u = K.rows_gather(syn0, ids, self.sg or self.cbow_mean)
                _, coef = K.negative_sampling_forward(u, self.syn1neg, t, ng)
                grad_u = K.negative_sampling_grad_inputs(coef, self.syn1neg, t, ng)
                K.negative_sampling_scatter_weights(coef, u, t, ng, lr, self.syn1neg)
                K.rows_scatter_add(syn0, ids, grad_u, lr, divide=not self.sg and not self.cbow_mean)
        return total

    def __repr__(self):
        n = len(self.index_to_key) if self.wv is not None else 0
        return (f"Word2Vec<vocab={n}, vector_size={self.vector_size}, window={self.window}, "
                f"sg={self.sg}, negative={self.negative}, alpha={self.alpha}>")
