"""What REINFORCE and actor-critic share: checking the environment and the networks at the
boundary, the default MLPs, acting without a graph, discounted returns, the solved rule.

Acting reads one observation at a time, so it runs under ``no_grad`` on the host and samples
the action with NumPy; the graph is built once per update, on the whole batch of states.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .. import backend, layers
from .. import random as grandom
from ..autograd import Tensor, no_grad
from ..layers.base import Layer
from ..models import Sequential

#: episodes the average return is taken over to call a task solved (gymnasium's rule)
SOLVED_WINDOW = 100


@dataclass
class RLResult:
    """What a training run gives back.

    ``returns[i]`` is the undiscounted return of episode ``i + 1``; ``solved_episode`` is the
    number of the episode that brought the average over the last ``window`` episodes to
    ``solved_at`` (None when it never did, or when no threshold was set).
    """
    returns: list = field(default_factory=list)
    solved_at: float | None = None
    solved_episode: int | None = None
    window: int = SOLVED_WINDOW
    wall_time: float = 0.0
    policy: object = None
    value: object = None

    @property
    def solved(self) -> bool:
        return self.solved_episode is not None

    @property
    def episodes(self) -> int:
        return len(self.returns)

    def moving_average(self, window: int | None = None) -> np.ndarray:
        """The mean return over the last ``window`` episodes (fewer at the start), per episode."""
        w = self.window if window is None else int(window)
        r = np.asarray(self.returns, dtype=np.float64)
        c = np.concatenate([[0.0], np.cumsum(r)])
        i = np.arange(1, len(r) + 1)
        lo = np.maximum(0, i - w)
        return (c[i] - c[lo]) / (i - lo)

    def __repr__(self):
        state = f"solved at episode {self.solved_episode}" if self.solved else "not solved"
        return f"RLResult({self.episodes} episodes, {state}, {self.wall_time:.1f} s)"


# ---- the environment ----------------------------------------------------------------------

def make_env(env, where):
    """An environment instance: a gymnasium id is made here (gymnasium is an optional extra)."""
    if isinstance(env, str):
        try:
            import gymnasium
        except ImportError:
            raise ImportError(f"{where}: an environment id needs gymnasium "
                              "(pip install 'gpudl[rl]'), which is not installed") from None
        return gymnasium.make(env)
    for attr in ("reset", "step", "observation_space", "action_space"):
        if not hasattr(env, attr):
            raise TypeError(f"{where} expected a gymnasium environment (or its id), got "
                            f"{type(env).__name__} without .{attr}")
    return env


def env_name(env) -> str:
    spec = getattr(env, "spec", None)
    return getattr(spec, "id", None) or type(env).__name__


def check_spaces(env, where):
    """(observation size, number of actions), or a ValueError naming what was expected and what came."""
    act, obs = env.action_space, env.observation_space
    n = getattr(act, "n", None)
    if type(act).__name__ != "Discrete" or n is None:
        raise ValueError(f"{where} expected an environment with a Discrete action space (a softmax "
                         f"policy picks one of n actions), got {env_name(env)} with action space {act!r}")
    shape = getattr(obs, "shape", None)
    if type(obs).__name__ != "Box" or not shape or len(shape) != 1:
        raise ValueError(f"{where} expected an environment with a flat Box observation space (a vector "
                         f"per state), got {env_name(env)} with observation space {obs!r}")
    return int(shape[0]), int(n)


def threshold(env, solved_at, where):
    if solved_at is None:
        spec = getattr(env, "spec", None)
        return getattr(spec, "reward_threshold", None)
    if isinstance(solved_at, bool) or not isinstance(solved_at, (int, float, np.integer, np.floating)):
        raise TypeError(f"{where} expected solved_at to be a number or None, got {type(solved_at).__name__}")
    return float(solved_at)


# ---- the networks -------------------------------------------------------------------------

def default_mlp(n_in, n_out, hidden=(64,), activation="tanh", name=None):
    """A small MLP, ``n_in`` -> hidden -> ``n_out`` linear outputs (logits or a value)."""
    seq = [layers.Dense(h, activation=activation) for h in hidden]
    seq.append(layers.Dense(n_out))
    return Sequential(seq, input_shape=(n_in,), name=name)


def check_net(net, n_in, n_out, role, where):
    """Run ``net`` once on a zero state: its output must be (1, n_out)."""
    if not isinstance(net, Layer):
        raise TypeError(f"{where} expected the {role} to be a gpudl model or layer, got {type(net).__name__}")
    with no_grad():
        try:
            y = forward(net, np.zeros((1, n_in), dtype=backend.default_dtype))
        except ValueError as e:
            raise ValueError(f"{where}: the {role} does not take states of size {n_in}: {e}") from None
    if tuple(y.shape) != (1, n_out):
        what = f"{n_out} logits (one per action)" if role == "policy" else f"{n_out} value per state"
        raise ValueError(f"{where} expected the {role} to output {what}, got output shape "
                         f"{tuple(y.shape)} for one state")
    return net


def forward(net, x, *, logits=True):
    """The network's raw output: ``logits=True`` stops a model before a final softmax."""
    if not isinstance(x, Tensor):
        x = Tensor(x)
    from ..models import Model
    if logits and isinstance(net, Model):  # gpudl models (Sequential, functional) take logits=
        return net(x, logits=True)
    return net(x)


def trainable(net):
    return net.trainable_params()


# ---- acting and returns -------------------------------------------------------------------

class Actor:
    """Samples actions from the policy's softmax, one state at a time, without a graph."""

    def __init__(self, policy, rng):
        self.policy, self.rng = policy, rng

    def __call__(self, obs) -> int:
        with no_grad():
            z = backend.to_numpy(forward(self.policy, obs[None]).data)[0].astype(np.float64)
        p = np.exp(z - z.max())
        c = np.cumsum(p)
        return int(min(np.searchsorted(c, self.rng.random() * c[-1], side="right"), len(c) - 1))


def as_obs(obs):
    return np.asarray(obs, dtype=backend.default_dtype).reshape(-1)


def discounted(rewards, gamma, bootstrap=0.0):
    """Returns-to-go G_t = r_t + gamma G_{t+1}, with G_T = ``bootstrap``."""
    out = np.empty(len(rewards), dtype=np.float64)
    g = float(bootstrap)
    for t in range(len(rewards) - 1, -1, -1):
        g = rewards[t] + gamma * g
        out[t] = g
    return out


def normalise(x):
    s = x.std()
    return (x - x.mean()) / (s + 1e-8) if len(x) > 1 else x - x.mean()


def check_common(episodes, gamma, where):
    if isinstance(episodes, bool) or not isinstance(episodes, (int, np.integer)) or episodes < 1:
        raise ValueError(f"{where} expected episodes to be a positive integer, got {episodes!r}")
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0.0 <= gamma <= 1.0:
        raise ValueError(f"{where} expected gamma in [0, 1], got {gamma!r}")


def optimizer(opt, learning_rate, where):
    """``opt`` itself, a named optimizer with its defaults, or Adam at ``learning_rate`` (None)."""
    from .. import optimizers
    if opt is None:
        return optimizers.Adam(learning_rate)
    if isinstance(opt, str):
        return optimizers.get(opt)
    if not isinstance(opt, optimizers.Optimizer):
        raise TypeError(f"{where} expected a gpudl optimizer, its name or None, got {type(opt).__name__}")
    return opt


def seed_all(env, seed, where):
    """One seed: gpudl's generator (weights, actions) and the environment's first reset."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{where} expected seed to be a non-negative integer, got {seed!r}")
    grandom.set_seed(int(seed))
    if hasattr(env.action_space, "seed"):
        env.action_space.seed(int(seed))
    return grandom.get_rng()


class Tracker:
    """Episode returns, the solved rule and the callback, shared by both algorithms."""

    def __init__(self, result, callback):
        self.result, self.callback = result, callback
        self.t0 = time.perf_counter()
        self._sum = 0.0

    def end_episode(self, ret) -> bool:
        """Record one return; True when training should stop (solved, or the callback said so)."""
        r = self.result
        r.returns.append(float(ret))
        w = r.window
        self._sum += ret - (r.returns[-w - 1] if len(r.returns) > w else 0.0)
        if r.solved_at is not None and len(r.returns) >= w and self._sum / w >= r.solved_at - 1e-9:
            r.solved_episode = len(r.returns)
        r.wall_time = time.perf_counter() - self.t0
        stop = self.callback(len(r.returns), float(ret), r) if self.callback is not None else False
        return bool(stop) or r.solved
