"""REINFORCE: Monte Carlo policy gradient with a learned baseline (Williams 1992)."""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..autograd import Tensor
from . import _common as C


def policy_loss(logits, actions, advantages, entropy=0.0):
    """``-mean_t(A_t log pi(a_t|s_t)) - entropy * mean_t H(pi(.|s_t))`` through gpudl's autograd.

    ``logits`` (T, n_actions) Tensor; ``actions`` (T,) ints; ``advantages`` (T,) constants.
    The log-probability of the taken action is picked with a one-hot mask, so the gradient
    is the score function ``d log pi(a|s) / d logits = onehot(a) - pi(.|s)``.
    """
    logp = F.log_softmax(logits, axis=-1)
    n = logits.shape[-1]
    onehot = np.eye(n, dtype=logits.dtype)[np.asarray(actions)]
    logp_a = (logp * Tensor(onehot)).sum(axis=1)
    adv = Tensor(np.asarray(advantages, dtype=logits.dtype))
    loss = -(logp_a * adv).mean()
    if entropy:
        h = -(logp.exp() * logp).sum(axis=1).mean()
        loss = loss - float(entropy) * h
    return loss


def value_loss(values, targets):
    """Mean squared error of the value network's (T, 1) output against (T,) targets."""
    v = values.reshape(values.shape[0])
    d = v - Tensor(np.asarray(targets, dtype=values.dtype))
    return (d * d).mean()



def fit_value(net, opt, states, targets):
    """One step of ``net`` (a baseline or critic) towards the returns ``targets`` on
    ``states``; the advantages ``targets - V(states)`` from the values before the step."""
    params = C.trainable(net)
    opt.zero_grad(params)
    v = C.forward(net, states)
    adv = targets - C.backend.to_numpy(v.data).reshape(-1).astype(np.float64)
    value_loss(v, targets).backward()
    opt.step(params)
    return adv

def run_episode(env, act, seed=None, max_steps=None):
    """One episode with the current policy: (states (T, d), actions (T,), rewards (T,),
    terminated, last observation)."""
    obs, _ = env.reset(seed=seed) if seed is not None else env.reset()
    states, actions, rewards = [], [], []
    terminated = truncated = False
    while not (terminated or truncated):
        o = C.as_obs(obs)
        a = act(o)
        obs, r, terminated, truncated, _ = env.step(a)
        states.append(o)
        actions.append(a)
        rewards.append(float(r))
        if max_steps is not None and len(rewards) >= max_steps:
            break
    return np.stack(states), np.asarray(actions), np.asarray(rewards), bool(terminated), C.as_obs(obs)


def reinforce(env, policy=None, baseline=None, episodes=1000, gamma=0.99, learning_rate=0.01,
              baseline_learning_rate=0.01, *, entropy=0.0, normalize=True, hidden=(64,),
              optimizer=None, baseline_optimizer=None, seed=0, solved_at=None, callback=None):
    """Train a softmax policy on a discrete-action environment with REINFORCE (Williams 1992).

    Each episode is played to its end with the current policy pi_theta; then, for every step,
    the return-to-go ``G_t = sum_k gamma^k r_{t+k}`` is compared with a learned baseline
    ``b(s_t)`` (a value network fitted to ``G_t`` by mean squared error), and the policy takes
    one gradient step on

        L(theta) = -mean_t (G_t - b(s_t)) log pi_theta(a_t | s_t)  -  entropy * mean_t H(pi_theta(.|s_t)),

    the likelihood-ratio estimate of the gradient of the expected return (the baseline leaves
    it unbiased and lowers its variance; Sutton & Barto, 2nd ed., section 13.4). With
    ``normalize=True`` the advantages of an episode are scaled to mean 0 and standard
    deviation 1 first, which keeps the step size independent of the return's scale.

    env: a gymnasium environment (or its id) with a Discrete action space and a flat Box
        observation space.
    policy: a gpudl model from a state (batch, obs_size) to one logit per action (a final
        softmax is skipped: the loss uses log_softmax on the logits); None builds an MLP with
        ``hidden`` tanh layers. baseline: a model from a state to one value; None builds one
        the same way; ``False`` trains without a baseline (plain REINFORCE).
    seed: seeds gpudl's generator (the default networks' weights, the sampled actions) and the
        environment's first reset; the same seed repeats a run episode by episode.
    solved_at: the average return over 100 consecutive episodes that ends training; None takes
        the environment's ``spec.reward_threshold`` (475 for CartPole-v1), if it has one.
    callback: ``callback(episode, episode_return, result)``, called after each episode; a true
        return value stops training.

    Returns an :class:`RLResult` (per-episode returns, whether and when it was solved, the
    trained networks).
    """
    where = "reinforce"
    C.check_common(episodes, gamma, where)
    env = C.make_env(env, where)
    n_obs, n_act = C.check_spaces(env, where)
    rng = C.seed_all(env, seed, where)
    policy = C.check_net(policy if policy is not None else C.default_mlp(n_obs, n_act, hidden, name="policy"),
                         n_obs, n_act, "policy", where)
    if baseline is not False:
        baseline = C.check_net(baseline if baseline is not None else C.default_mlp(n_obs, 1, hidden, name="baseline"),
                               n_obs, 1, "baseline", where)
    opt = C.optimizer(optimizer, learning_rate, where)
    bopt = C.optimizer(baseline_optimizer, baseline_learning_rate, where) if baseline is not False else None
    result = C.RLResult(solved_at=C.threshold(env, solved_at, where), policy=policy,
                        value=baseline if baseline is not False else None)
    track = C.Tracker(result, callback)
    act = C.Actor(policy, rng)
    for ep in range(episodes):
        states, actions, rewards, _, _ = run_episode(env, act, seed=int(seed) if ep == 0 else None)
        g = C.discounted(rewards, gamma)
        adv = g
        if baseline is not False:
            adv = fit_value(baseline, bopt, states, g)
        if normalize:
            adv = C.normalise(adv)
        params = C.trainable(policy)
        opt.zero_grad(params)
        policy_loss(C.forward(policy, states), actions, adv, entropy).backward()
        opt.step(params)
        if track.end_episode(rewards.sum()):
            break
    return result
