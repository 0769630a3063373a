"""Advantage actor-critic: a policy (the actor) trained on n-step advantages estimated by a
learned state-value function (the critic); Sutton & Barto, 2nd ed., section 13.5."""
from __future__ import annotations

import numpy as np

from ..autograd import no_grad
from . import _common as C
from .reinforce import fit_value, policy_loss


def _bootstrap(value, obs, terminated):
    """V(s) of the state a segment stopped in; 0 past a terminal state (its value is 0 by
    definition), the critic's estimate after a time limit or a cut (the episode goes on)."""
    if terminated:
        return 0.0
    with no_grad():
        return float(C.backend.to_numpy(C.forward(value, obs[None]).data).reshape(-1)[0])


def actor_critic(env, policy=None, value=None, episodes=1000, gamma=0.99, learning_rate=0.003,
                 value_learning_rate=0.01, *, n_steps=32, entropy=0.01, normalize=False, hidden=(64,),
                 optimizer=None, value_optimizer=None, seed=0, solved_at=None, callback=None):
    """Train a softmax policy with advantage actor-critic (A2C, one environment).

    The agent acts for ``n_steps`` steps (fewer when the episode ends), then updates both
    networks once on that segment. For step t of the segment, the n-step return

        G_t = r_t + gamma r_{t+1} + ... + gamma^(k-1) r_{t+k-1} + gamma^k V(s_{t+k})

    bootstraps from the critic's value of the state the segment stopped in (0 if that state is
    terminal; a time limit is not a terminal state, so it bootstraps). The critic V_w takes one
    step on ``mean_t (G_t - V_w(s_t))^2`` and the actor one step on

        L(theta) = -mean_t A_t log pi_theta(a_t | s_t) - entropy * mean_t H(pi_theta(.|s_t)),

    with the advantage ``A_t = G_t - V_w(s_t)`` a constant for the actor. ``normalize=True``
    scales the advantages to mean 0, standard deviation 1 over each segment; off by default,
    as the critic already centres them, and over short segments the scaling magnifies noise
    (on CartPole-v1 it solved fewer seeds). ``n_steps=1`` is Sutton &
    Barto's one-step actor-critic (delta = r + gamma V(s') - V(s)), updated at every step; larger
    segments trade bias for variance and are far cheaper per step (one batched update).

    env, policy, seed, solved_at, callback: as :func:`gpudl.rl.reinforce`; ``value`` is the
    critic, a model from a state to one value (None builds an MLP with ``hidden`` tanh layers).

    Returns an :class:`RLResult`.
    """
    where = "actor_critic"
    C.check_common(episodes, gamma, where)
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
        raise ValueError(f"{where} expected n_steps to be a positive integer, got {n_steps!r}")
    env = C.make_env(env, where)
    n_obs, n_act = C.check_spaces(env, where)
    rng = C.seed_all(env, seed, where)
    policy = C.check_net(policy if policy is not None else C.default_mlp(n_obs, n_act, hidden, name="policy"),
                         n_obs, n_act, "policy", where)
    value = C.check_net(value if value is not None else C.default_mlp(n_obs, 1, hidden, name="value"),
                        n_obs, 1, "value network", where)
    opt = C.optimizer(optimizer, learning_rate, where)
    vopt = C.optimizer(value_optimizer, value_learning_rate, where)
    result = C.RLResult(solved_at=C.threshold(env, solved_at, where), policy=policy, value=value)
    track = C.Tracker(result, callback)
    act = C.Actor(policy, rng)

    def update(states, actions, rewards, last_obs, terminated):
        g = C.discounted(rewards, gamma, _bootstrap(value, last_obs, terminated))
        s = np.stack(states)
        adv = fit_value(value, vopt, s, g)
        if normalize and len(adv) > 1:
            adv = C.normalise(adv)
        params = C.trainable(policy)
        opt.zero_grad(params)
        policy_loss(C.forward(policy, s), actions, adv, entropy).backward()
        opt.step(params)

    for ep in range(episodes):
        obs, _ = env.reset(seed=int(seed)) if ep == 0 else env.reset()
        obs = C.as_obs(obs)
        total, done = 0.0, False
        states, actions, rewards = [], [], []
        while not done:
            a = act(obs)
            nxt, r, terminated, truncated, _ = env.step(a)
            states.append(obs)
            actions.append(a)
            rewards.append(float(r))
            total += float(r)
            obs, done = C.as_obs(nxt), bool(terminated or truncated)
            if done or len(rewards) == n_steps:
                update(states, actions, rewards, obs, bool(terminated))
                states, actions, rewards = [], [], []
        if track.end_episode(total):
            break
    return result
