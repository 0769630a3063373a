"""gpudl.word2vec: training direction, exact repeats, gensim's vocabulary rules and evaluation
functions on the same vectors, the fused negative-sampling op, bad input, the demo."""
import math

import numpy as np
import pytest

from gpudl import Tensor
from gpudl import functional as F
from gpudl.functional.negative_sampling import negative_sampling_grads
from gpudl.testing import gradcheck
from gpudl.word2vec import KeyedVectors, Word2Vec


def _topic_corpus(seed=0, sentences=200, length=8):
    """Two groups of words that never share a sentence."""
    rng = np.random.default_rng(seed)
    a = [f"a{i}" for i in range(6)]
    b = [f"b{i}" for i in range(6)]
    return a, b, [[str(w) for w in rng.choice(a if k % 2 else b, length)] for k in range(sentences)]


def _mean_similarity(wv, xs, ys):
    return np.mean([wv.similarity(x, y) for x in xs for y in ys if x != y])


@pytest.mark.parametrize("sg", [1, 0], ids=["skip-gram", "cbow"])
def test_cooccurring_words_end_up_more_similar(sg):
    a, b, sentences = _topic_corpus()
    model = Word2Vec(vector_size=16, window=3, min_count=1, sg=sg, epochs=10, sample=0)
    model.build_vocab(sentences)
    before = _mean_similarity(model.wv, a, a) - _mean_similarity(model.wv, a, b)
    model.train()
    within = (_mean_similarity(model.wv, a, a) + _mean_similarity(model.wv, b, b)) / 2
    across = _mean_similarity(model.wv, a, b)
    assert abs(before) < 0.2
    assert within > across + 0.5, (within, across)


def test_cbow_sum_trains_too():
    # a summed context drives every input vector one way (gensim's do too), so the check is
    # each word's nearest neighbours, not absolute cosines
    a, b, sentences = _topic_corpus(seed=1)
    model = Word2Vec(sentences, vector_size=16, window=3, min_count=1, sg=0, cbow_mean=0, epochs=10,
                     sample=0)
    same = [sum(w[0] == word[0] for w, _ in model.wv.most_similar(word, topn=5)) / 5 for word in a + b]
    assert np.mean(same) > 0.7  # chance: 5 of the 11 others


def test_two_workers_train_the_same_direction():
    a, b, sentences = _topic_corpus(sentences=400)
    model = Word2Vec(sentences, vector_size=16, window=3, min_count=1, epochs=10, sample=0, workers=2,
                     batch_words=400)
    assert _mean_similarity(model.wv, a, a) > _mean_similarity(model.wv, a, b) + 0.5


def test_seeded_runs_repeat_exactly_and_seeds_differ():
    _, _, sentences = _topic_corpus()
    kw = dict(vector_size=8, window=2, min_count=1, epochs=2)
    v1 = Word2Vec(sentences, seed=3, **kw).wv.vectors
    v2 = Word2Vec(sentences, seed=3, **kw).wv.vectors
    v3 = Word2Vec(sentences, seed=4, **kw).wv.vectors
    np.testing.assert_array_equal(v1, v2)
    assert not np.allclose(v1, v3)


def test_vectors_are_the_embedding_weights():
    _, _, sentences = _topic_corpus()
    model = Word2Vec(sentences, vector_size=8, min_count=1, epochs=1)
    np.testing.assert_array_equal(model.wv.vectors, model.embedding.embeddings.data)
    assert model.wv.vectors.shape == (len(model.wv.index_to_key), 8)
    w = model.wv.index_to_key[0]
    np.testing.assert_array_equal(model.wv[w], model.wv.vectors[model.wv.key_to_index[w]])
    assert model.wv[[w, w]].shape == (2, 8)
    unit = model.wv.get_vector(w, norm=True)
    assert math.isclose(float(np.linalg.norm(unit)), 1.0, rel_tol=1e-5)


def test_vocabulary_sorted_by_count_with_min_count():
    sentences = [["x", "y", "y", "z", "z", "z", "rare"], ["z", "y", "x"]]
    model = Word2Vec(vector_size=4, min_count=2)
    model.build_vocab(sentences)
    assert model.wv.index_to_key == ["z", "y", "x"]
    assert "rare" not in model.wv and "z" in model.wv
    assert list(model.counts) == [4, 3, 2]


def test_max_final_vocab_caps_the_vocabulary():
    sentences = [["a"] * 5 + ["b"] * 4 + ["c"] * 3 + ["d"] * 2]
    model = Word2Vec(vector_size=4, min_count=1, max_final_vocab=2)
    model.build_vocab(sentences)
    assert model.wv.index_to_key == ["a", "b"]


def test_keep_probability_is_gensims_formula():
    sentences = [["common"] * 500 + ["mid"] * 20 + ["rare"] * 2]
    model = Word2Vec(vector_size=4, min_count=1, sample=1e-2)
    model.build_vocab(sentences)
    t = 1e-2 * 522
    for word, c in (("common", 500), ("mid", 20), ("rare", 2)):
        expected = min(1.0, (math.sqrt(c / t) + 1) * t / c)
        assert math.isclose(model.keep_probability(word), expected, rel_tol=1e-12)
    assert model.keep_probability("common") < 0.3
    assert model.keep_probability("rare") == 1.0


def test_subsampling_drops_frequent_words_in_training():
    # every sentence "common x": with heavy subsampling most centre words vanish, so
    # fewer effective words are trained than without it
    sentences = [["common"] * 50 + ["x"] for _ in range(20)]
    kw = dict(vector_size=4, min_count=1, epochs=1, window=1)
    with_sample, raw = Word2Vec(sample=1e-3, **kw).build_vocab(sentences).train()
    without, raw2 = Word2Vec(sample=0, **kw).build_vocab(sentences).train()
    assert raw == raw2 == 20 * 51
    assert without == raw
    assert with_sample < 0.5 * raw


def test_learning_rate_falls_linearly_over_jobs():
    sentences = [["w"] * 10 for _ in range(10)]
    model = Word2Vec(vector_size=4, min_count=1, batch_words=30, epochs=2, alpha=0.1, min_alpha=0.0)
    model.build_vocab(sentences)
    bounds, alphas = model._jobs(model._corpus[2], 1, 2, 0.1, 0.0)
    np.testing.assert_array_equal(bounds, [0, 3, 6, 9, 10])
    np.testing.assert_allclose(alphas, [0.1 - 0.1 * (1 + d / 10) / 2 for d in (0, 3, 6, 9)])


# ---- gensim as the peer ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gensim():
    return pytest.importorskip("gensim", reason="gensim is the peer: pip install 'gpudl[embeddings]'")


def _lee(gensim):
    from gensim.test.utils import datapath
    with open(datapath("lee_background.cor"), encoding="utf8") as fin:
        return [line.split() for line in fin]


def test_vocabulary_sampling_and_negative_table_match_gensim(gensim):
    from gensim.models import Word2Vec as GensimWord2Vec
    sentences = _lee(gensim)
    for kw in (dict(min_count=2, sample=1e-3, ns_exponent=0.75), dict(min_count=5, sample=1e-4, ns_exponent=0.5)):
        ours = Word2Vec(vector_size=8, **kw).build_vocab(sentences)
        peer = GensimWord2Vec(vector_size=8, seed=0, **kw)
        peer.build_vocab(sentences)
        assert ours.wv.index_to_key == peer.wv.index_to_key
        np.testing.assert_array_equal(ours.sample_int, peer.wv.expandos["sample_int"])
        np.testing.assert_array_equal(ours.cum_table, peer.cum_table)
        assert ours.corpus_total_words == peer.corpus_total_words
        np.testing.assert_array_equal(ours.wv.vectors, peer.wv.vectors)  # the same starting vectors


@pytest.fixture(scope="module")
def random_vectors(gensim):
    """The same random vectors for lee_background's vocabulary, as gpudl's and gensim's
    KeyedVectors."""
    from gensim.models import KeyedVectors as GensimKeyedVectors
    model = Word2Vec(vector_size=24, min_count=1).build_vocab(_lee(gensim))
    vectors = np.random.default_rng(7).standard_normal((len(model.wv), 24)).astype(np.float32)
    ours = KeyedVectors(model.wv.index_to_key, vectors)
    peer = GensimKeyedVectors(24)
    peer.add_vectors(model.wv.index_to_key, vectors)
    return ours, peer


def test_similarity_and_most_similar_match_gensim(random_vectors):
    ours, peer = random_vectors
    assert math.isclose(ours.similarity("government", "minister"),
                        float(peer.similarity("government", "minister")), rel_tol=1e-5)
    for pos, neg in ((["government"], []), (["woman", "king"], ["man"]), (["president"], ["bush", "the"])):
        got = ours.most_similar(positive=pos, negative=neg, topn=10)
        want = peer.most_similar(positive=pos, negative=neg, topn=10)
        assert [w for w, _ in got] == [w for w, _ in want]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], rtol=1e-5)
        assert not set(pos + neg) & {w for w, _ in got}


def test_evaluate_word_pairs_matches_gensim(random_vectors):
    from gensim.test.utils import datapath
    ours, peer = random_vectors
    for name in ("wordsim353.tsv", "simlex999.txt"):
        for dummy in (False, True):
            got = ours.evaluate_word_pairs(datapath(name), dummy4unknown=dummy)
            want = peer.evaluate_word_pairs(datapath(name), dummy4unknown=dummy)
            np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
            np.testing.assert_allclose(got[1], want[1], rtol=1e-5)
            assert math.isclose(got[2], want[2])


def test_evaluate_word_analogies_matches_gensim(random_vectors):
    from gensim.test.utils import datapath
    ours, peer = random_vectors
    score, sections = ours.evaluate_word_analogies(datapath("questions-words.txt"))
    want_score, want_sections = peer.evaluate_word_analogies(datapath("questions-words.txt"))
    assert math.isclose(score, want_score)
    assert [s["section"] for s in sections] == [s["section"] for s in want_sections]
    for got, want in zip(sections, want_sections):
        assert got["correct"] == want["correct"]
        assert len(got["incorrect"]) == len(want["incorrect"])
    assert len(sections[-1]["correct"]) + len(sections[-1]["incorrect"]) > 100


def test_word2vec_format_round_trips_and_gensim_reads_it(random_vectors, tmp_path):
    from gensim.models import KeyedVectors as GensimKeyedVectors
    ours, _ = random_vectors
    path = tmp_path / "vectors.txt"
    ours.save_word2vec_format(path)
    back = KeyedVectors.load_word2vec_format(path)
    assert back.index_to_key == ours.index_to_key
    np.testing.assert_array_equal(back.vectors, ours.vectors)
    peer = GensimKeyedVectors.load_word2vec_format(str(path), binary=False)
    np.testing.assert_array_equal(peer.vectors, ours.vectors)


@pytest.mark.slow
def test_wordsim_is_within_003_of_gensim_on_head500(gensim):
    """Lecture III's target: on gensim's head500 corpus with the same settings (skip-gram, 100
    dims, window 5, 5 negatives, 5 epochs, one thread), gpudl's WordSim-353 Spearman, the mean
    over two seeds, is at most 0.03 below gensim's (about a minute and a half)."""
    from gensim.models import Word2Vec as GensimWord2Vec
    from gensim.test.utils import datapath
    with open(datapath("head500.noblanks.cor"), encoding="utf8") as fin:
        sentences = [line.split() for line in fin]
    ours, peer = [], []
    for seed in (0, 1):
        ours.append(Word2Vec(sentences, seed=seed).wv.evaluate_word_pairs(datapath("wordsim353.tsv"))[1][0])
        g = GensimWord2Vec(sentences, sg=1, seed=seed, workers=1)
        peer.append(g.wv.evaluate_word_pairs(datapath("wordsim353.tsv"))[1][0])
    assert np.mean(ours) > np.mean(peer) - 0.03, (ours, peer)


# ---- the fused negative-sampling op ------------------------------------------------------------

def _pairs(rng, b=6, d=4, v=9, k=3):
    u = rng.standard_normal((b, d))
    w = rng.standard_normal((v, d))
    contexts = rng.integers(0, v, b)
    negatives = rng.integers(0, v, (b, k))
    negatives[0, 0] = contexts[0]      # a sample equal to its context
    negatives[1, :] = 2                # one row drawn k times
    return u, w, contexts, negatives


@pytest.mark.parametrize("reduction", ["sum", "mean", "none"])
def test_negative_sampling_loss_gradcheck(reduction):
    u, w, contexts, negatives = _pairs(np.random.default_rng(0))
    wt = Tensor(w, requires_grad=True)
    assert gradcheck(lambda x: F.negative_sampling_loss(x, wt, contexts, negatives, reduction=reduction),
                     [u], params=[wt])


def test_negative_sampling_loss_is_the_sgns_objective():
    u, w, contexts, negatives = _pairs(np.random.default_rng(1))
    loss = F.negative_sampling_loss(Tensor(u), Tensor(w), contexts, negatives, reduction="none").numpy()

    def log_sigmoid(x):
        return -np.log1p(np.exp(-x))
    want = [-log_sigmoid(u[b] @ w[contexts[b]]) - sum(log_sigmoid(-(u[b] @ w[n])) for n in negatives[b])
            for b in range(len(u))]
    np.testing.assert_allclose(loss, want, rtol=1e-12)
    big = F.negative_sampling_loss(Tensor(u * 1e3), Tensor(w), contexts, negatives).numpy()
    assert np.isfinite(big)


def test_sparse_rows_sum_to_the_dense_gradient():
    u, w, contexts, negatives = _pairs(np.random.default_rng(2))
    ut, wt = Tensor(u, requires_grad=True), Tensor(w, requires_grad=True)
    F.negative_sampling_loss(ut, wt, contexts, negatives).backward()
    losses, gu, ids, rows = negative_sampling_grads(u, w, contexts, negatives)
    dense = np.zeros_like(w)
    np.add.at(dense, ids.reshape(-1), rows.reshape(-1, w.shape[1]))
    np.testing.assert_allclose(gu, ut.grad, rtol=1e-12)
    np.testing.assert_allclose(dense, wt.grad, rtol=1e-12, atol=1e-15)


def test_negative_sampling_loss_rejects_bad_input():
    u, w, contexts, negatives = _pairs(np.random.default_rng(3))
    with pytest.raises(ValueError, match=r"contexts ids in \[0, 9\)"):
        F.negative_sampling_loss(Tensor(u), Tensor(w), contexts + 9, negatives)
    with pytest.raises(ValueError, match=r"output_weights of shape \(V, 4\)"):
        F.negative_sampling_loss(Tensor(u), Tensor(w[:, :3]), contexts, negatives)
    with pytest.raises(TypeError, match="integer word ids for negatives"):
        F.negative_sampling_loss(Tensor(u), Tensor(w), contexts, negatives.astype(float))
    with pytest.raises(ValueError, match=r"negatives of shape \(6, K\)"):
        F.negative_sampling_loss(Tensor(u), Tensor(w), contexts, negatives[:2])
    with pytest.raises(ValueError, match="reduction"):
        F.negative_sampling_loss(Tensor(u), Tensor(w), contexts, negatives, reduction="max")


# ---- bad input -----------------------------------------------------------------------------------

def test_no_word_reaching_min_count_names_it_and_the_top_count():
    with pytest.raises(ValueError, match=r"min_count=5.*'b', occurs 3 times"):
        Word2Vec([["a", "b", "b"], ["b", "c"]], min_count=5)


def test_unknown_word_is_a_key_error_naming_it():
    _, _, sentences = _topic_corpus()
    wv = Word2Vec(sentences, vector_size=4, min_count=1, epochs=1).wv
    with pytest.raises(KeyError, match="'zebra'"):
        wv["zebra"]
    with pytest.raises(KeyError, match="'zebra'"):
        wv.most_similar(positive=["a0", "zebra"])
    with pytest.raises(KeyError, match="'zebra'"):
        wv.similarity("zebra", "a0")
    assert "zebra" not in wv


@pytest.mark.parametrize("sentences,match", [
    ("the cat sat on the mat", "iterable of token lists.*got one str"),
    (["the cat sat", "on the mat"], "sentence 0 as a str"),
    ((s for s in [["a", "b"]]), "restartable iterable.*one-pass generator"),
    (42, "iterable of token lists, got int"),
])
def test_sentences_of_the_wrong_shape(sentences, match):
    with pytest.raises(TypeError, match=match):
        Word2Vec(sentences, min_count=1)


@pytest.mark.parametrize("kw,error,match", [
    (dict(vector_size=0), ValueError, "vector_size >= 1, got 0"),
    (dict(window=0), ValueError, "window >= 1, got 0"),
    (dict(negative=0), ValueError, "negative >= 1, got 0"),
    (dict(min_count=0), ValueError, "min_count >= 1, got 0"),
    (dict(epochs=0), ValueError, "epochs >= 1, got 0"),
    (dict(vector_size=2.5), TypeError, "integer vector_size"),
    (dict(sg=2), ValueError, "sg=1 .skip-gram. or sg=0 .CBOW., got 2"),
    (dict(cbow_mean=3), ValueError, "cbow_mean"),
    (dict(alpha=0), ValueError, r"alpha in \(0.0, inf\), got 0.0"),
    (dict(alpha=0.01, min_alpha=0.1), ValueError, r"min_alpha in \[0.0, 0.01\], got 0.1"),
    (dict(sample=-1), ValueError, "sample"),
    (dict(backend="tpu"), ValueError, "backend in"),
    (dict(batch_pairs=0), ValueError, "batch_pairs >= 1, got 0"),
])
def test_bad_hyperparameters(kw, error, match):
    with pytest.raises(error, match=match):
        Word2Vec(**kw)


def test_train_without_vocabulary_says_what_to_do():
    with pytest.raises(ValueError, match="build_vocab"):
        Word2Vec().train()


# ---- the demo ------------------------------------------------------------------------------------

def test_demo_trained_vectors_beat_untrained_on_wordsim(gensim, tmp_path):
    """A corpus where WordSim-353's pairs co-occur as often as people rate them similar: the
    trained vectors' Spearman must beat the untrained ones' by far, for gpudl and gensim."""
    from gensim.test.utils import datapath

    from gpudl import demos
    rng = np.random.default_rng(0)
    filler = [f"filler{i}" for i in range(40)]
    lines = []
    with open(datapath("wordsim353.tsv"), encoding="utf8") as fin:
        for line in fin:
            if line.startswith("#"):
                continue
            a, b, score = line.split("\t")
            for _ in range(int(round(float(score)))):
                words = [a.lower(), b.lower()] + list(rng.choice(filler, 4))
                rng.shuffle(words)
                lines.append(" ".join(words))
    corpus = tmp_path / "pairs.cor"
    corpus.write_text("\n".join(lines) + "\n")
    out = demos.word2vec_demo(corpus=str(corpus), vector_size=24, window=5, min_count=1, epochs=5,
                              verbose=False)
    assert out["gpudl"]["wordsim353"] > out["untrained"]["wordsim353"] + 0.2, out
    assert out["gensim"]["wordsim353"] > out["untrained"]["wordsim353"] + 0.2, out
    assert out["gpudl"]["words_per_second"] > 0 and out["gensim"]["words_per_second"] > 0


def test_demo_without_gensim_says_how_to_install_it(monkeypatch, capsys):
    import sys

    from gpudl import demos
    monkeypatch.setitem(sys.modules, "gensim.test.utils", None)  # import fails as if absent
    assert demos.word2vec_demo() == 1
    assert "pip install 'gpudl[embeddings]'" in capsys.readouterr().out


# ---- the GPU path, on the test device (Numba's simulator behind the CuPy stand-in) ----------------

@pytest.mark.gpu
@pytest.mark.parametrize("sg,cbow_mean", [(1, 1), (0, 1), (0, 0)], ids=["skip-gram", "cbow-mean", "cbow-sum"])
def test_device_training_is_the_op_summed_over_each_batch(sg, cbow_mean):
    """Training on CuPy arrays is SGD on mini-batches of ``batch_pairs`` pairs with the op's
    summed gradients (NumPy reference), from the same tables; two epochs of several batches, so
    both tables move."""
    from gpudl import backend
    from gpudl.word2vec import _job_pairs
    if not backend.cupy_available():
        pytest.skip("CuPy backend unavailable: no CuPy package or no CUDA GPU here")
    sentences = [["a", "b", "c", "d", "b"], ["c", "a", "e", "d"]]
    kw = dict(vector_size=4, window=2, min_count=1, negative=2, epochs=2, sample=0, alpha=0.05, seed=5,
              batch_pairs=3, sg=sg, cbow_mean=cbow_mean)
    model = Word2Vec(backend="cupy", **kw).build_vocab(sentences)
    syn0 = backend.to_numpy(model.embedding.embeddings.data).astype(np.float64)
    syn1 = np.zeros_like(syn0)
    words, starts, raw = model._corpus
    rng = np.random.default_rng([5, 0])
    for epoch in range(2):
        seed = rng.integers(0, 2**48, 1, dtype=np.uint64)[0]
        inputs, targets, negs, _, _ = _job_pairs(words, starts, 0, 2, model.sample_int, False,
                                                 model.cum_table, 2, 2, bool(sg), np.uint64(seed))
        lr = model._jobs(raw, epoch, 2, 0.05, model.min_alpha)[1][0]
        assert len(targets) > 6
        for b0 in range(0, len(targets), 3):
            ids, t, n = inputs[b0:b0 + 3], targets[b0:b0 + 3], negs[b0:b0 + 3]
            mask = ids >= 0
            count = mask.sum(axis=1, keepdims=True)
            u = (syn0[np.where(mask, ids, 0)] * mask[:, :, None]).sum(axis=1)
            if sg or cbow_mean:
                u = u / count
            _, gu, rid, rows = negative_sampling_grads(u, syn1, t, n)
            np.add.at(syn1, rid.reshape(-1), -lr * rows.reshape(-1, 4))
            per_slot = -lr * (gu if sg or cbow_mean else gu / count)
            np.add.at(syn0, ids[mask], np.repeat(per_slot, mask.sum(axis=1), axis=0))
    model.train()
    assert np.abs(syn1).max() > 0
    np.testing.assert_allclose(model.wv.vectors, syn0, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(backend.to_numpy(model.syn1neg), syn1, rtol=1e-5, atol=1e-7)
