"""DistributedOptimizer (ChainerMN's ``create_multi_node_optimizer``, Horovod's
``DistributedOptimizer``): the gradients are summed over the ranks first, so clipping
(``clipnorm``, ``global_clipnorm``), weight decay and the update rule all see the global
gradient, and every rank applies the same update."""
from __future__ import annotations

from .. import optimizers as optim
from ..autograd import Tensor
from .reduce import GradientReducer

__all__ = ["DistributedOptimizer"]


class DistributedOptimizer:
    """Wraps an optimizer (an instance or a name): ``step(params)`` and
    ``apply_gradients(pairs)`` allreduce the gradients in one fused buffer, then update.

    ``weight``: this rank's share of the global gradient; by default ``1 / size`` (the mean
    of the ranks' gradients, right when every rank's loss is a mean over equal shares). Pass
    ``m / B`` for ``m`` of ``B`` samples when shares differ. Everything else (learning_rate,
    iterations, get_config, state) is the wrapped optimizer's. ``compile(optimizer=
    DistributedOptimizer(...))`` makes ``fit`` distributed by default.
    """

    def __init__(self, optimizer, comm=None):
        inner = optimizer.optimizer if isinstance(optimizer, DistributedOptimizer) else optim.get(optimizer)
        object.__setattr__(self, "optimizer", inner)
        object.__setattr__(self, "_comm", comm)
        object.__setattr__(self, "_reducer", None)

    @property
    def comm(self):
        from . import world
        return self._comm if self._comm is not None else world()

    @property
    def reducer(self) -> GradientReducer:
        r = self._reducer
        if r is None or r.comm is not self.comm:
            r = GradientReducer(self.comm)
            object.__setattr__(self, "_reducer", r)
        return r

    def __getattr__(self, name):
        return getattr(self.optimizer, name)

    def __setattr__(self, name, value):
        setattr(self.optimizer, name, value)  # learning_rate set by a callback lands inside

    def _weight(self, weight):
        return 1.0 / self.comm.size if weight is None else float(weight)

    def step(self, params, weight=None) -> None:
        """Allreduce each parameter's ``.grad`` (None counts as zeros), then one update."""
        params = list(params)
        self.optimizer._check_params(params, "step")
        grads, _ = self.reducer.reduce(params, [p.grad for p in params], self._weight(weight))
        self.optimizer._apply(params, grads, "step")

    def apply_gradients(self, grads_and_vars, weight=None) -> int:
        pairs = [tuple(p) for p in grads_and_vars]
        grads = [g.data if isinstance(g, Tensor) else g for g, _ in pairs]
        params = [p for _, p in pairs]
        self.optimizer._check_params(params, "apply_gradients")
        grads, _ = self.reducer.reduce(params, grads, self._weight(weight))
        self.optimizer.apply(grads, params)
        return self.optimizer.iterations

    def zero_grad(self, params):
        self.optimizer.zero_grad(params)

    def __repr__(self):
        return f"DistributedOptimizer({self.optimizer!r})"
