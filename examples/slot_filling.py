"""Lecture II's slot filling: tag each word of a travel request with its slot, e.g.

    arrive  Taipei  on  November  2nd          leave   Taipei  on  November  2nd
    O       dest    O   arr_time  arr_time     O       depart  O   dep_time  dep_time

The same words fill different slots depending on what came before ("arrive" or "leave"), or
after ("on November 2nd I will arrive in Taipei"): a feed-forward tagger cannot tell them
apart, a bidirectional recurrent one can. Model: Embedding(mask_zero=True) ->
Bidirectional(LSTM, return_sequences=True) -> a softmax per step, trained with ``fit`` on
padded id sequences; the mask from the Embedding makes the padding count for nothing in the
loss, the accuracy and the recurrent states.

    python examples/slot_filling.py                    # 3,000 generated sentences, 12 epochs
    python examples/slot_filling.py --sentences 1000 --epochs 3

The sentences are generated from templates with cities, months and days drawn at random (a
seeded generator); the held-out sentences are drawn apart from the training ones, and half of
them name cities that never occur in training (unknown words: their slot comes from the
context alone; training replaces a tenth of its slot words by the unknown id to teach that).
Prints the training history, the per-word accuracy on the held-out sentences (real words
only) and a few tagged examples.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import gpudl  # noqa: E402
from gpudl import layers, optimizers  # noqa: E402

CITIES = ["taipei", "tokyo", "boston", "paris", "london", "seoul", "berlin", "new york", "hong kong",
          "los angeles", "san francisco", "kaohsiung", "osaka", "sydney", "rome", "madrid"]
MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september",
          "october", "november", "december"]
DAYS = [f"{d}{'st' if d % 10 == 1 and d != 11 else 'nd' if d % 10 == 2 and d != 12 else 'rd' if d % 10 == 3 and d != 13 else 'th'}"
        for d in range(1, 32)]

#: slot tags; index 0 is reserved for padding (never a real word's tag)
TAGS = ["<pad>", "O", "B-dest", "I-dest", "B-depart", "I-depart", "B-arr_time", "I-arr_time", "B-dep_time",
        "I-dep_time"]

# templates: words, or a slot {kind:role}: city roles dest/depart, date roles arr_time/dep_time
TEMPLATES = [
    "arrive {city:dest} on {date:arr_time}",
    "leave {city:depart} on {date:dep_time}",
    "i would like to arrive {city:dest} on {date:arr_time}",
    "i want to leave {city:depart} on {date:dep_time}",
    "i need to arrive in {city:dest} on {date:arr_time} please",
    "i will leave {city:depart} on {date:dep_time} and arrive {city:dest} on {date:arr_time}",
    "flights from {city:depart} to {city:dest} on {date:dep_time}",
    "on {date:arr_time} i will arrive in {city:dest}",
    "on {date:dep_time} i will leave {city:depart}",
    "show me flights to {city:dest} arriving on {date:arr_time}",
    "{city:depart} to {city:dest} leaving {date:dep_time}",
    "from {city:depart} on {date:dep_time} to {city:dest}",
]


#: cities that never occur in training: the held-out sentences name them, so the tagger must read
#: their role from the words around them ("arrive ... on" or "leave ... on"), as the slides ask
UNSEEN_CITIES = ["kyoto", "lisbon", "buenos aires", "cape town"]


def generate(n, seed=0, cities=CITIES):
    """``n`` sentences as (words, tags) lists, from the templates with random slot values."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        template = TEMPLATES[rng.integers(len(TEMPLATES))]
        words, tags = [], []
        for token in template.split():
            if token.startswith("{"):
                kind, role = token[1:-1].split(":")
                if kind == "city":
                    value = cities[rng.integers(len(cities))].split()
                else:
                    value = [MONTHS[rng.integers(12)], DAYS[rng.integers(31)]]
                words += value
                tags += [f"B-{role}"] + [f"I-{role}"] * (len(value) - 1)
            else:
                words.append(token)
                tags.append("O")
        out.append((words, tags))
    return out


class Vocabulary:
    """Word ids: 0 is padding (masked), 1 an unknown word, then the training words."""

    def __init__(self, sentences):
        words = sorted({w for ws, _ in sentences for w in ws})
        self.ids = {w: i + 2 for i, w in enumerate(words)}

    def __len__(self):
        return len(self.ids) + 2

    def encode(self, sentences, length, unknown_rate=0.0, rng=None):
        """(ids (N, length) int64 with 0 after each sentence, tags (N, length) with 0 there).
        ``unknown_rate``: the share of slot words (tag not "O") replaced by the unknown id, so
        that the tagger learns to place words it has never seen."""
        x = np.zeros((len(sentences), length), dtype=np.int64)
        y = np.zeros((len(sentences), length), dtype=np.int64)
        tag_ids = {t: i for i, t in enumerate(TAGS)}
        for i, (ws, ts) in enumerate(sentences):
            if len(ws) > length:
                raise ValueError(f"sentence {i} has {len(ws)} words, more than the padded length {length}")
            x[i, :len(ws)] = [self.ids.get(w, 1) for w in ws]
            y[i, :len(ts)] = [tag_ids[t] for t in ts]
            if unknown_rate:
                slot = np.array([t != "O" for t in ts])
                drop = slot & (rng.random(len(ws)) < unknown_rate)
                x[i, :len(ws)][drop] = 1
        return x, y


def build_model(vocab_size, embed=32, units=32, tags=len(TAGS)):
    return gpudl.Sequential([
        layers.Embedding(vocab_size, embed, mask_zero=True),
        layers.Bidirectional(layers.LSTM(units, return_sequences=True)),
        layers.Dense(tags, activation="softmax"),
    ])


def build_baseline(vocab_size, embed=32, tags=len(TAGS)):
    """The feed-forward tagger of the slides' argument: each word alone, no context."""
    return gpudl.Sequential([
        layers.Embedding(vocab_size, embed, mask_zero=True),
        layers.Dense(64, activation="relu"),
        layers.Dense(tags, activation="softmax"),
    ])


def word_accuracy(model, x, y):
    """Per-word accuracy over the real (unpadded) words."""
    pred = model.predict(x, batch_size=256).argmax(axis=-1)
    real = x != 0
    return float((pred[real] == y[real]).mean())


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Lecture II's slot filling with a bidirectional LSTM")
    p.add_argument("--sentences", type=int, default=3000, help="training sentences (held out: a quarter as many)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=0.005)
    p.add_argument("--units", type=int, default=32)
    p.add_argument("--backend", choices=["numpy", "cupy", "auto"], default="numpy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                   help="also train a feed-forward tagger without context (default: on)")
    args = p.parse_args(argv)
    if args.sentences < 10 or args.epochs < 1 or args.batch_size < 1:
        p.error("--sentences must be at least 10, --epochs and --batch-size positive")
    return args


def main(argv=None):
    args = parse_args(argv)
    print(f"backend: {gpudl.set_backend(args.backend)}")
    gpudl.set_seed(args.seed)
    train = generate(args.sentences, seed=args.seed)
    # the held-out half of the test set names cities never seen in training
    n_test = max(args.sentences // 4, 10)
    test = generate(n_test - n_test // 2, seed=args.seed + 1000) + \
        generate(n_test // 2, seed=args.seed + 2000, cities=UNSEEN_CITIES)
    vocab = Vocabulary(train)
    length = max(len(ws) for ws, _ in train + test)
    x_train, y_train = vocab.encode(train, length, unknown_rate=0.1, rng=np.random.default_rng(args.seed))
    x_test, y_test = vocab.encode(test, length)
    print(f"{len(train)} training and {len(test)} held-out sentences ({n_test // 2} of them naming cities "
          f"never seen in training), {len(vocab)} word ids, padded to {length} words")
    model = build_model(len(vocab), units=args.units)
    model.compile(optimizer=optimizers.Adam(learning_rate=args.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    hist = model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
                     validation_data=(x_test, y_test), verbose=2)
    acc = word_accuracy(model, x_test, y_test)
    half = n_test - n_test // 2
    unseen = word_accuracy(model, x_test[half:], y_test[half:])
    print(f"held-out per-word accuracy: {acc:.4f} (sentences with unseen cities: {unseen:.4f})")
    shown = [0, 1, half]
    pred = model.predict(x_test[shown]).argmax(axis=-1)
    for i, p in zip(shown, pred):
        ws = test[i][0]
        print("  " + "  ".join(f"{w}/{TAGS[t]}" for w, t in zip(ws, p[:len(ws)])))
    result = {"accuracy": acc, "unseen_accuracy": unseen, "history": hist.history}
    if args.baseline:
        base = build_baseline(len(vocab))
        base.compile(optimizer=optimizers.Adam(learning_rate=args.learning_rate),
                     loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        base.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, verbose=0)
        result["baseline_accuracy"] = word_accuracy(base, x_test, y_test)
        print(f"feed-forward tagger (each word alone), same data and epochs: "
              f"{result['baseline_accuracy']:.4f}: it cannot tell a destination from a departure")
    return result


if __name__ == "__main__":
    main()
