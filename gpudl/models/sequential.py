"""Sequential: a stack of layers (build, call, summary, weights, config, save and load).

Training lives apart, in ``gpudl.training`` (compile / fit / evaluate / predict and their
steps); Sequential mixes the trainer in, as Keras' Model does.
"""
from __future__ import annotations

import warnings

import numpy as np

from .. import backend
from .. import optimizers as optim
from ..autograd import Tensor, no_grad
from ..errors import ModelFileError
from ..layers.base import Layer, get_layer_class
from ..training import Trainer
from ..training.epoch_iterator import as_array

__all__ = ["Sequential", "load_model"]

FORMAT = "gpudl-model"
WEIGHTS_FORMAT = "gpudl-weights"
FORMAT_VERSION = 1


class Sequential(Trainer, Layer):
    """A stack of layers; ``model(x)`` runs them in order."""

    def __init__(self, layers=None, input_shape=None, name=None):
        super().__init__(name)
        self.layers: list[Layer] = []
        self.input_shape = None if input_shape is None else self._check_input_shape(input_shape)
        self._output_shapes = None
        for layer in layers or []:
            self.add(layer)

    @staticmethod
    def _check_input_shape(shape):
        if isinstance(shape, int):
            shape = (shape,)
        try:
            shape = tuple(int(s) for s in shape)
        except (TypeError, ValueError):
            raise ValueError(f"input_shape expected a tuple of positive integers, got {shape!r}") from None
        if not shape or any(s < 1 for s in shape):
            raise ValueError(f"input_shape expected a tuple of positive integers, got {shape!r}")
        return shape

    def add(self, layer):
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expected a gpudl layer, got {type(layer).__name__}")
        if any(layer is l for l in self.layers):
            raise ValueError(f"{layer.describe()} is already in this model")
        declared = layer.declared_input_shape
        if declared is not None and not self.layers:
            # Keras 2: Dense(500, input_dim=784) as the first layer gives the model its input shape
            if self.input_shape is None:
                self.input_shape = tuple(declared)
            elif tuple(declared) != tuple(self.input_shape):
                raise ValueError(f"{layer.describe()} was given input_shape {tuple(declared)}, but "
                                 f"{self.describe()} has input_shape {tuple(self.input_shape)}")
        self.layers.append(layer)
        self.built = False

    def pop(self) -> Layer:
        """Remove the last layer and return it (Keras' ``pop``); the model rebuilds on next use."""
        if not self.layers:
            raise ValueError(f"{self.describe()} has no layers to pop")
        layer = self.layers.pop()
        self.built, self._output_shapes = False, None
        return layer

    def get_layer(self, name=None, index=None) -> Layer:
        """A layer by ``name`` or by position ``index`` (Keras' ``get_layer``)."""
        if name is not None and index is not None:
            raise ValueError(f"{self.describe()}.get_layer: pass a layer name or an index, not both")
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
                raise ValueError(f"{self.describe()}.get_layer expected an integer index, got {index!r}")
            n = len(self.layers)
            if not -n <= index < n:
                raise ValueError(f"{self.describe()}.get_layer: index {index} is out of range for a model "
                                 f"with {n} layers")
            return self.layers[index]
        if name is not None:
            for layer in self.layers:
                if layer.name == name:
                    return layer
            names = ", ".join(repr(l.name) for l in self.layers) or "none"
            raise ValueError(f"{self.describe()}.get_layer: no layer named {name!r}; the layers are {names}")
        raise ValueError(f"{self.describe()}.get_layer: pass a layer name or an index")

    def sublayers(self):
        return list(self.layers)

    # ---- building and running ---------------------------------------------------------
    def build(self, x=None):
        """Build every layer from ``input_shape`` with one dummy sample; records output shapes."""
        if isinstance(x, Tensor):
            shape = x.shape[1:]
        elif x is not None:
            shape = self._check_input_shape(x)
        else:
            shape = self.input_shape
        if shape is None:
            raise ValueError(f"{self.describe()} cannot be built without an input shape: pass input_shape= "
                             "or call it on data first")
        if self.input_shape is None:
            self.input_shape = tuple(shape)
        if not self.layers:
            raise ValueError(f"{self.describe()} has no layers")
        dummy = Tensor(np.zeros((1,) + tuple(self.input_shape), dtype=backend.default_dtype))
        training = self.training
        self.train(False)
        shapes = []
        with no_grad():
            h = dummy
            for layer in self.layers:
                h = layer(h)
                shapes.append(h.shape[1:])
        self.train(training)
        for i in range(1, len(self.layers)):
            declared = self.layers[i].declared_input_shape
            if declared is not None and tuple(declared) != tuple(shapes[i - 1]):
                raise ValueError(f"{self.layers[i].describe()} was given input_shape {tuple(declared)}, but "
                                 f"the layer before it outputs shape {tuple(shapes[i - 1])}")
        self._output_shapes = shapes
        self.built = True
        self.dtype = self.layers[0].dtype

    def __call__(self, x, **kwargs):
        if not isinstance(x, Tensor):
            x = as_array(x, f"{self.describe()} input")
            if x is None:
                raise ValueError(f"{self.describe()} input: expected an array, got None")
            x = Tensor(x)
        if not self.built:
            self.build(x)
        if self.input_shape is not None and tuple(x.shape[1:]) != tuple(self.input_shape):
            raise ValueError(f"{self.describe()} expected input of shape (batch, "
                             f"{', '.join(map(str, self.input_shape))}), got shape {x.shape}")
        return self.forward(x, **kwargs)

    def forward(self, x, logits=False):
        """Run the layers; ``logits=True`` asks the last layer to stop before its final
        activation (see ``output_activation``), for the losses fused on logits."""
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x, logits=True) if logits and i == last and layer.output_activation() else layer(x)
        return x

    @property
    def output_shape(self):
        """The output's shape without the batch axis (None before build)."""
        return tuple(self._output_shapes[-1]) if self._output_shapes else None

    def output_activation(self):
        """The activation the last layer ends with that it can leave out ("softmax",
        "sigmoid") or None: what the trainer asks before fusing a loss with it."""
        return self.layers[-1].output_activation() if self.layers else None

    def _penalty(self):
        total = None
        for p in self.trainable_params():
            if getattr(p, "regularizer", None) is not None:
                r = p.regularizer(p)
                total = r if total is None else total + r
        return total

    # ---- description ------------------------------------------------------------------
    def summary(self, print_fn=print) -> str:
        """A table of layers, output shapes and parameter counts; printed and returned."""
        if not self.built:
            self.build()
        rows = [("Layer (type)", "Output Shape", "Param #")]
        for layer, shape in zip(self.layers, self._output_shapes):
            count = sum(int(p.size) for p in layer.params())
            rows.append((f"{layer.name} ({type(layer).__name__})", str((None,) + tuple(shape)), f"{count:,}"))
        widths = [max(len(r[i]) for r in rows) + 2 for i in range(3)]
        line = "-" * sum(widths)
        out = [f'Model: "{self.name}"', line, "".join(c.ljust(w) for c, w in zip(rows[0], widths)), "=" * sum(widths)]
        for r in rows[1:]:
            out.append("".join(c.ljust(w) for c, w in zip(r, widths)))
        total = sum(int(p.size) for p in self.params())
        trainable = sum(int(p.size) for p in self.trainable_params())
        out += ["=" * sum(widths), f"Total params: {total:,}", f"Trainable params: {trainable:,}",
                f"Non-trainable params: {total - trainable:,}", line]
        text = "\n".join(out)
        if print_fn is not None:
            print_fn(text)
        return text

    def count_params(self) -> int:
        return sum(int(p.size) for p in self.params())

    # ---- weights (get_weights / set_weights come from Layer) ---------------------------
    def save_weights(self, path) -> None:
        """Only the parameters, in ``params()`` order, in gpudl's checksummed atomic file."""
        from .. import io
        if not self.built:
            self.build()
        params = self.params()
        arrays = {f"param/{i}": backend.to_numpy(p.data) for i, p in enumerate(params)}
        meta = {"format": WEIGHTS_FORMAT, "version": FORMAT_VERSION,
                "shapes": [list(p.shape) for p in params], "names": [p.name for p in params]}
        io.save_file(path, arrays, meta)

    def load_weights(self, path) -> None:
        """Parameters from ``save_weights`` (or a whole-model file): raises ModelFileError when the
        file does not match this architecture, naming expected and found shapes."""
        from .. import io
        meta, arrays = io.load_file(path)
        if meta.get("format") not in (WEIGHTS_FORMAT, FORMAT):
            raise ModelFileError(f"{path}: expected a {WEIGHTS_FORMAT!r} file, got format {meta.get('format')!r}")
        if not self.built:
            self.build()
        params = self.params()
        found = sorted((k for k in arrays if k.startswith("param/")), key=lambda k: (len(k), k))
        expected = [tuple(p.shape) for p in params]
        got = [tuple(arrays[k].shape) for k in found]
        if found != [f"param/{i}" for i in range(len(params))] or got != expected:
            raise ModelFileError(f"{path}: the weights do not fit {self.describe()}: expected {len(expected)} "
                                 f"parameters of shapes {expected}, got {len(got)} of shapes {got}")
        for p, k in zip(params, found):
            p.data[...] = backend.to_backend(arrays[k].astype(p.dtype, copy=False), backend.backend_of(p.data))

    def to(self, name: str) -> "Sequential":
        """Move parameters and optimizer state to backend ``name``."""
        super().to(name)
        if self.optimizer is not None:
            for st in self.optimizer._state.values():
                for k in st:
                    st[k] = backend.to_backend(st[k], name)
        return self

    # ---- config and files -------------------------------------------------------------
    def get_config(self) -> dict:
        return {"name": self.name, "input_shape": list(self.input_shape) if self.input_shape else None,
                "layers": [{"class": type(l).__name__, "config": l.get_config()} for l in self.layers]}

    @classmethod
    def from_config(cls, config: dict) -> "Sequential":
        layers = [get_layer_class(item["class"]).from_config(item["config"]) for item in config["layers"]]
        return cls(layers, input_shape=config.get("input_shape"), name=config.get("name"))

    def save(self, path, _checkpoint=None) -> None:
        """Architecture (JSON), weights, optimizer state, training position and RNG state,
        written atomically (temp file, fsync, rename): never a pickle."""
        from .. import io
        if not self.built:
            self.build()
        arrays = {f"param/{i}": backend.to_numpy(p.data) for i, p in enumerate(self.params())}
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "backend": backend.get_backend(),
                "model": {"class": type(self).__name__, "config": self.get_config()},
                "dtype": str(np.dtype(self.dtype or backend.default_dtype))}
        if self.optimizer is not None:
            meta["compile"] = {"optimizer": {"class": type(self.optimizer).__name__,
                                             "config": self.optimizer.get_config(),
                                             "iterations": self.optimizer.iterations},
                               **self.compile_config()}
            for k, v in self.optimizer.get_state(self.params()).items():
                arrays[f"opt/{k}"] = v
        meta["training"] = self.training_state.state_dict()
        if _checkpoint is not None:
            meta["checkpoint"] = _checkpoint
        io.save_file(path, arrays, meta)


def load_model(path) -> Sequential:
    """Rebuild a saved model (architecture, weights, optimizer); raises ModelFileError."""
    from .. import io
    meta, arrays = io.load_file(path)
    try:
        if meta.get("format") != FORMAT:
            raise ModelFileError(f"{path}: expected a {FORMAT!r} file, got format {meta.get('format')!r}")
        if meta.get("version") != FORMAT_VERSION:
            raise ModelFileError(f"{path}: expected model format version {FORMAT_VERSION}, got {meta.get('version')!r}")
        mcfg = meta["model"]
        if mcfg.get("class") != "Sequential":
            raise ModelFileError(f"{path}: expected a Sequential model, got {mcfg.get('class')!r}")
        model = Sequential.from_config(mcfg["config"])
        model.build()
        params = model.params()
        n_params = sum(1 for k in arrays if k.startswith("param/"))
        if n_params != len(params):
            raise ModelFileError(f"{path}: the architecture has {len(params)} parameters, the file holds {n_params}")
        if meta.get("dtype", "float32") not in ("float16", "float32", "float64"):
            raise ModelFileError(f"{path}: expected a float16/float32/float64 model dtype, got {meta.get('dtype')!r}")
        dtype = np.dtype(meta.get("dtype", "float32"))
        for i, p in enumerate(params):
            w = arrays.get(f"param/{i}")
            if w is None or tuple(w.shape) != p.shape:
                raise ModelFileError(f"{path}: parameter {i} ({p.name}) expected shape {p.shape}, "
                                     f"got {None if w is None else tuple(w.shape)}")
            p.data = backend.to_backend(w.astype(dtype, copy=False), backend.backend_of(p.data))
        comp = meta.get("compile")
        if comp:
            oc = comp["optimizer"]
            opt = optim.from_config(oc["class"], oc["config"])
            try:
                loss, mets = model.compile_from_config(comp)
                model.compile(opt, loss, mets)
            except ValueError as exc:
                # a user's loss or metric this process cannot rebuild: keep weights, optimizer
                # and position (a resume needs them); the caller compiles with the objects again
                warnings.warn(f"{path}: the model's loss/metrics could not be rebuilt ({exc}); it loads "
                              "uncompiled: call compile() with them", RuntimeWarning, stacklevel=2)
                model.optimizer = opt
            state = {k[len("opt/"):]: v for k, v in arrays.items() if k.startswith("opt/")}
            model.optimizer.set_state(params, state, int(oc.get("iterations", 0)))
        # fit() on the loaded model continues the saved random stream and position (exact resume)
        model.training_state.load_state_dict(meta.get("training") or {}, checkpoint=meta.get("checkpoint"))
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(f"{path}: invalid model description in the file: {type(exc).__name__}: {exc}") from None
    return model
