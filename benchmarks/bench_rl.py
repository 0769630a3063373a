"""Lecture III: REINFORCE (learned baseline) and advantage actor-critic on CartPole-v1.

Trains each algorithm once per seed, each run stopping when solved (gymnasium's rule: an
average return of 475 over 100 consecutive episodes) or at the cap, and prints the episode
each seed was solved at, the environment steps it took and the wall time.

    python benchmarks/bench_rl.py --algorithms reinforce actor-critic --seeds 0 1 2 3 4 --episodes 1000
"""
from __future__ import annotations

import argparse
import os
import sys
import time

ALGORITHMS = ("reinforce", "actor-critic")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algorithms", nargs="+", choices=ALGORITHMS, default=list(ALGORITHMS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--episodes", type=int, default=1000, help="cap on episodes per run (1000)")
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS threads (1: the batches are tiny, more threads only spin)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import gymnasium
    from gpudl.rl import actor_critic, reinforce
    train = {"reinforce": reinforce, "actor-critic": actor_critic}
    print(f"CartPole-v1, cap {args.episodes} episodes, gymnasium {gymnasium.__version__}")
    print(f"{'algorithm':14s}{'seed':>6s}{'solved at':>11s}{'steps':>9s}{'wall s':>9s}")
    failed = 0
    for name in args.algorithms:
        solved = []
        t_all = time.perf_counter()
        for seed in args.seeds:
            env = gymnasium.make("CartPole-v1")
            r = train[name](env, episodes=args.episodes, seed=seed)
            env.close()
            at = str(r.solved_episode) if r.solved else f"no ({max(r.moving_average()):.0f})"
            print(f"{name:14s}{seed:>6d}{at:>11s}{int(sum(r.returns)):>9d}{r.wall_time:>9.1f}", flush=True)
            solved.append(r.solved)
        n = sum(solved)
        print(f"{name}: solved {n} of {len(solved)} seeds, {time.perf_counter() - t_all:.1f} s in all")
        failed += n < 0.8 * len(solved)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
