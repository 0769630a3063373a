"""Lecture III: gpudl's Word2Vec beside gensim's, on the same corpus and settings.

For each corpus, both models train with the same hyperparameters and worker threads, in
alternation, ``--repeats`` times each (the figures of a shared machine wander; the median
words/s is printed with the range). Printed per model: WordSim-353 and SimLex-999 Spearman,
analogy accuracy on questions-words.txt (questions whose words are in the vocabulary),
training words/s (raw corpus words times epochs over the train() wall time) and wall time.
Before timing, the vocabulary, subsampling thresholds and negative-sampling table are checked
equal to gensim's, and gpudl's compiled loop is warmed up on a small slice.

    python benchmarks/bench_word2vec.py --corpora head500.noblanks.cor lee_background.cor --repeats 3
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpora", nargs="+", default=["head500.noblanks.cor", "lee_background.cor"],
                   help="files of one sentence a line: gensim test_data names or paths")
    p.add_argument("--sg", type=int, default=1, choices=(0, 1))
    p.add_argument("--vector-size", type=int, default=100)
    p.add_argument("--window", type=int, default=5)
    p.add_argument("--min-count", type=int, default=5)
    p.add_argument("--negative", type=int, default=5)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--sample", type=float, default=1e-3)
    p.add_argument("--workers", type=int, default=1, help="threads for both (1: a fair words/s)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0],
                   help="one run per seed and repeat; quality is the mean over them")
    p.add_argument("--repeats", type=int, default=1)
    return p.parse_args(argv)


def _scores(wv, datapath):
    out = {}
    for key, name in (("ws", "wordsim353.tsv"), ("sl", "simlex999.txt")):
        out[key] = wv.evaluate_word_pairs(datapath(name))[1][0]
    acc, sections = wv.evaluate_word_analogies(datapath("questions-words.txt"))
    out["an"] = acc
    out["an_n"] = len(sections[-1]["correct"]) + len(sections[-1]["incorrect"])
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    try:
        import gensim
        from gensim.models import Word2Vec as GensimWord2Vec
        from gensim.test.utils import datapath
    except ImportError:
        print("bench_word2vec needs gensim, the peer: pip install 'gpudl[embeddings]'")
        return 1
    import numpy as np

    from gpudl.word2vec import Word2Vec
    settings = dict(sg=args.sg, vector_size=args.vector_size, window=args.window,
                    min_count=args.min_count, negative=args.negative, epochs=args.epochs,
                    sample=args.sample, workers=args.workers)
    print(f"gensim {gensim.__version__}; {settings}; {os.cpu_count()} CPUs seen")
    failed = 0
    for corpus in args.corpora:
        path = corpus if os.path.exists(corpus) else datapath(corpus)
        with open(path, encoding="utf8") as fin:
            sentences = [line.split() for line in fin]
        words = sum(map(len, sentences))
        ours = Word2Vec(**settings).build_vocab(sentences)
        peer = GensimWord2Vec(**settings)
        peer.build_vocab(sentences)
        same = (ours.wv.index_to_key == peer.wv.index_to_key
                and np.array_equal(ours.sample_int, peer.wv.expandos["sample_int"])
                and np.array_equal(ours.cum_table, peer.cum_table))
        if not same:
            print(f"{corpus}: vocabulary, subsampling or negative table differ from gensim's")
            failed += 1
        Word2Vec(sentences[:20], **{**settings, "min_count": 1, "epochs": 1})  # compile / load the loop
        print(f"\n{corpus}: {len(sentences)} sentences, {words} words, vocabulary {len(ours.wv)}; "
              f"vocabulary and tables equal to gensim's: {same}")
        runs = {"gpudl": [], "gensim": []}
        for _ in range(args.repeats):
            for seed in args.seeds:
                m = Word2Vec(**settings, seed=seed).build_vocab(sentences)
                c0 = time.process_time()
                m.train()
                cpu = time.process_time() - c0
                runs["gpudl"].append({**_scores(m.wv, datapath), "wps": m.words_per_second,
                                      "s": m.train_seconds, "cpu": cpu, "cwps": words * m.epochs / cpu})
                g = GensimWord2Vec(**settings, seed=seed)
                g.build_vocab(sentences)
                c0, t0 = time.process_time(), time.perf_counter()
                g.train(sentences, total_examples=g.corpus_count, epochs=g.epochs)
                s, cpu = time.perf_counter() - t0, time.process_time() - c0
                runs["gensim"].append({**_scores(g.wv, datapath), "wps": words * g.epochs / s,
                                       "s": s, "cpu": cpu, "cwps": words * g.epochs / cpu})
        print(f"{'model':8s}{'WordSim-353':>13s}{'SimLex-999':>12s}{'analogies':>18s}"
              f"{'words/s (median, range)':>32s}{'wall s':>9s}{'words/CPU-s':>13s}{'CPU s':>8s}")
        for name, rs in runs.items():
            mean = {k: statistics.fmean(r[k] for r in rs) for k in ("ws", "sl", "an", "s", "cpu")}
            wps = sorted(r["wps"] for r in rs)
            print(f"{name:8s}{mean['ws']:>13.3f}{mean['sl']:>12.3f}"
                  f"{100 * mean['an']:>10.2f} % of {rs[0]['an_n']:<4d}"
                  f"{statistics.median(wps):>14,.0f} ({wps[0]:,.0f}-{wps[-1]:,.0f})"
                  f"{mean['s']:>9.2f}{statistics.median(r['cwps'] for r in rs):>13,.0f}{mean['cpu']:>8.2f}")
            if len(rs) > 1:
                per_run = " ".join(f"{r['ws']:.3f}" for r in rs)
                print(f"{'':8s}WordSim-353 per run: {per_run}")
        ws = [statistics.fmean(r["ws"] for r in runs[n]) for n in ("gpudl", "gensim")]

        def ratio(key):
            return statistics.median(r[key] for r in runs["gpudl"]) / statistics.median(r[key] for r in runs["gensim"])
        print(f"gpudl - gensim WordSim-353: {ws[0] - ws[1]:+.3f}; gpudl / gensim words/s: {ratio('wps'):.2f} "
              f"(wall), {ratio('cwps'):.2f} (CPU time)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
