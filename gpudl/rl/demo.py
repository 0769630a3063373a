"""Lecture III's policy gradient on CartPole-v1: train until solved (gymnasium's rule, an
average return of 475 over 100 consecutive episodes) or a cap, then draw the return curve."""
from __future__ import annotations

import sys

ALGORITHMS = {"reinforce": "REINFORCE with a learned baseline", "actor-critic": "advantage actor-critic"}


def plot_returns(result, path, title=None):
    """Per-episode returns, their 100-episode average and the solved line, into one PNG."""
    from ..plots import _pyplot, save_figure
    if not result.returns:
        raise ValueError("plot_returns expected a result with at least one episode, got none")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    x = range(1, result.episodes + 1)
    ax.plot(x, result.returns, lw=0.8, alpha=0.5, label="return per episode")
    ax.plot(x, result.moving_average(), lw=2, label=f"average of the last {result.window}")
    if result.solved_at is not None:
        ax.axhline(result.solved_at, ls="--", c="gray", lw=1, label=f"solved at {result.solved_at:g}")
    if result.solved:
        ax.axvline(result.solved_episode, ls=":", c="green", lw=1)
    ax.set_xlabel("episode")
    ax.set_ylabel("return")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def policy_gradient_demo(episodes=1000, seed=0, out="policy_gradient.png", algorithm="reinforce") -> int:
    """Train on CartPole-v1 with ``algorithm`` ("reinforce" or "actor-critic") for at most
    ``episodes`` episodes, print the episode it was solved at, and write the return curve to
    ``out``. Exit code: 0 solved, 1 not solved within the cap, 2 gymnasium missing."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"policy_gradient_demo expected algorithm one of {', '.join(map(repr, ALGORITHMS))}, "
                         f"got {algorithm!r}")
    try:
        import gymnasium
    except ImportError:
        print("the policy-gradient demo needs gymnasium: pip install 'gpudl[rl]'", file=sys.stderr)
        return 2
    from .actor_critic import actor_critic
    from .reinforce import reinforce
    train = reinforce if algorithm == "reinforce" else actor_critic
    env = gymnasium.make("CartPole-v1")
    try:
        result = train(env, episodes=episodes, seed=seed)
    finally:
        env.close()
    name = ALGORITHMS[algorithm]
    print(f"CartPole-v1, {name}, seed {seed}, at most {episodes} episodes")
    if result.solved:
        print(f"solved at episode {result.solved_episode}: average return "
              f"{result.moving_average()[-1]:.1f} >= {result.solved_at:g} over the last {result.window} episodes "
              f"({result.wall_time:.1f} s)")
    else:
        best = result.moving_average().max()
        print(f"not solved in {result.episodes} episodes: best {result.window}-episode average return "
              f"{best:.1f}, {result.solved_at:g} needed ({result.wall_time:.1f} s)")
    plot_returns(result, out, title=f"CartPole-v1, {name}, seed {seed}")
    print(f"return curve: {out}")
    return 0 if result.solved else 1
