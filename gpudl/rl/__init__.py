"""Lecture III's reinforcement learning: policy gradients on gymnasium environments.

``reinforce`` (Monte Carlo policy gradient with a learned baseline, Williams 1992) and
``actor_critic`` (n-step advantage actor-critic, Sutton & Barto) train a softmax policy, a
gpudl model, through gpudl's autograd and optimizers. gymnasium is the optional ``rl`` extra;
importing this package does not import it.
"""
from ._common import RLResult, default_mlp
from .actor_critic import actor_critic
from .reinforce import policy_loss, reinforce

__all__ = ["reinforce", "actor_critic", "RLResult", "default_mlp", "policy_loss"]
