"""REINFORCE and actor-critic on CartPole-v1: they learn, repeat under a seed, and reject
environments and networks they cannot use."""
import numpy as np
import pytest

gym = pytest.importorskip("gymnasium")

from gpudl import Sequential, Tensor, layers  # noqa: E402
from gpudl.rl import actor_critic, policy_loss, reinforce  # noqa: E402
from gpudl.rl._common import discounted  # noqa: E402
from gpudl.rl.actor_critic import _bootstrap  # noqa: E402
from gpudl.rl.demo import policy_gradient_demo  # noqa: E402
from gpudl.testing import gradcheck  # noqa: E402

ALGOS = {"reinforce": reinforce, "actor_critic": actor_critic}


def cartpole():
    return gym.make("CartPole-v1")


# ---- the direction of the effect ----------------------------------------------------------

def test_reinforce_return_rises_over_a_short_run():
    r = reinforce(cartpole(), episodes=50, seed=0)
    first, last = np.mean(r.returns[:20]), np.mean(r.returns[-20:])
    assert last > 2 * first, (first, last)


def test_actor_critic_return_rises_over_a_short_run():
    r = actor_critic(cartpole(), episodes=100, seed=0)
    first, last = np.mean(r.returns[:20]), np.mean(r.returns[-20:])
    assert last > 1.5 * first, (first, last)


def test_stops_when_solved_at_is_reached():
    r = reinforce(cartpole(), episodes=400, seed=0, solved_at=40.0)
    assert r.solved and r.episodes == r.solved_episode < 400
    assert np.mean(r.returns[-100:]) >= 40.0
    assert np.mean(r.returns[-101:-1]) < 40.0 or r.episodes == 100  # the first episode it was reached


def test_threshold_defaults_to_the_environments():
    r = reinforce(cartpole(), episodes=2, seed=0)
    assert r.solved_at == 475.0 and not r.solved and r.episodes == 2


def test_callback_can_stop_training():
    seen = []
    r = actor_critic(cartpole(), episodes=50, seed=0,
                     callback=lambda ep, ret, res: seen.append((ep, ret)) or ep == 3)
    assert r.episodes == 3 and [e for e, _ in seen] == [1, 2, 3]
    assert [x for _, x in seen] == r.returns


# ---- seeded repeatability -----------------------------------------------------------------

@pytest.mark.parametrize("name", list(ALGOS))
def test_same_seed_same_returns_episode_by_episode(name):
    train = ALGOS[name]
    a = train(cartpole(), episodes=15, seed=3)
    b = train(cartpole(), episodes=15, seed=3)
    c = train(cartpole(), episodes=15, seed=4)
    assert a.returns == b.returns
    assert a.returns != c.returns
    for pa, pb in zip(a.policy.params(), b.policy.params()):
        np.testing.assert_array_equal(pa.data, pb.data)


def _softmax_policy(kind):
    if kind == "sequential":
        return Sequential([layers.Dense(16, activation="relu"), layers.Dense(2, activation="softmax")],
                          input_shape=(4,))
    from gpudl import Input, Model
    x = Input((4,))
    return Model(x, layers.Dense(2, activation="softmax")(layers.Dense(16, activation="relu")(x)))


@pytest.mark.parametrize("kind", ["sequential", "functional"])
def test_accepts_an_environment_id_and_given_networks(kind):
    from gpudl.rl._common import forward
    policy = _softmax_policy(kind)
    r = reinforce("CartPole-v1", policy=policy, baseline=False, episodes=3, seed=0)
    assert r.policy is policy and r.value is None and len(r.returns) == 3
    # the loss sees logits: the final softmax is skipped (its rows would sum to 1)
    z = forward(policy, np.ones((2, 4), np.float32)).numpy()
    assert not np.allclose(z.sum(axis=1), 1.0)


# ---- bad input ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(ALGOS))
def test_continuous_actions_are_rejected(name):
    with pytest.raises(ValueError, match=r"expected an environment with a Discrete action space.*"
                                         r"Pendulum-v1 with action space Box"):
        ALGOS[name](gym.make("Pendulum-v1"), episodes=1)


@pytest.mark.parametrize("name", list(ALGOS))
def test_policy_with_the_wrong_number_of_outputs_is_rejected(name):
    policy = Sequential([layers.Dense(3)], input_shape=(4,))
    with pytest.raises(ValueError, match=r"expected the policy to output 2 logits \(one per action\), "
                                         r"got output shape \(1, 3\)"):
        ALGOS[name](cartpole(), policy=policy, episodes=1)


def test_policy_with_the_wrong_input_size_is_rejected():
    policy = Sequential([layers.Dense(2)], input_shape=(5,))
    with pytest.raises(ValueError, match="the policy does not take states of size 4"):
        reinforce(cartpole(), policy=policy, episodes=1)


def test_value_network_with_the_wrong_output_is_rejected():
    with pytest.raises(ValueError, match=r"expected the value network to output 1 value per state, "
                                         r"got output shape \(1, 2\)"):
        actor_critic(cartpole(), value=Sequential([layers.Dense(2)], input_shape=(4,)), episodes=1)


@pytest.mark.parametrize("kw, msg", [({"episodes": 0}, "episodes to be a positive integer, got 0"),
                                     ({"gamma": 1.5}, r"gamma in \[0, 1\], got 1.5"),
                                     ({"seed": -1}, "seed to be a non-negative integer, got -1")])
def test_bad_arguments(kw, msg):
    with pytest.raises(ValueError, match=msg):
        reinforce(cartpole(), **kw)


def test_not_an_environment():
    with pytest.raises(TypeError, match="expected a gymnasium environment .* got list without .reset"):
        reinforce([1, 2], episodes=1)


# ---- the pieces ---------------------------------------------------------------------------

def test_policy_loss_gradient_is_the_score_function():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((6, 3))
    actions, adv = rng.integers(0, 3, 6), rng.standard_normal(6)
    x = Tensor(z, requires_grad=True)
    policy_loss(x, actions, adv).backward()
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    expected = -(np.eye(3)[actions] - p) * adv[:, None] / 6
    np.testing.assert_allclose(x.grad, expected, atol=1e-12)
    assert gradcheck(lambda t: policy_loss(t, actions, adv, entropy=0.1), [z])


def test_discounted_returns_and_bootstrap():
    np.testing.assert_allclose(discounted([1.0, 1.0, 1.0], 0.5), [1.75, 1.5, 1.0])
    np.testing.assert_allclose(discounted([1.0, 1.0], 0.5, bootstrap=4.0), [2.5, 3.0])
    value = Sequential([layers.Dense(1, bias_initializer="ones", kernel_initializer="zeros")], input_shape=(4,))
    obs = np.zeros(4, np.float32)
    assert _bootstrap(value, obs, terminated=True) == 0.0
    assert _bootstrap(value, obs, terminated=False) == 1.0


# ---- the demo -----------------------------------------------------------------------------

def test_demo_writes_its_return_curve(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "curve.png"
    rc = policy_gradient_demo(episodes=3, seed=0, out=str(out))
    text = capsys.readouterr().out
    assert rc == 1 and "not solved in 3 episodes" in text and str(out) in text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_rejects_an_unknown_algorithm(tmp_path):
    with pytest.raises(ValueError, match="algorithm one of 'reinforce', 'actor-critic', got 'dqn'"):
        policy_gradient_demo(episodes=1, out=str(tmp_path / "x.png"), algorithm="dqn")


def test_optimizers_given_or_rejected():
    from gpudl import optimizers
    opt = optimizers.SGD(0.01)
    reinforce(cartpole(), episodes=2, seed=0, optimizer=opt, baseline_optimizer="rmsprop")
    assert opt.iterations == 2
    with pytest.raises(TypeError, match="expected a gpudl optimizer, its name or None, got int"):
        actor_critic(cartpole(), episodes=1, optimizer=3)


def test_gpudl_demo_policy_gradient_passes_its_options_and_exit_code(tmp_path, capsys):
    from gpudl import demos
    png = tmp_path / "curve.png"
    rc = demos.run("policy-gradient", ["--episodes", "3", "--seed", "2", "--plot", str(png)])
    out = capsys.readouterr().out
    assert rc == 1 and "not solved in 3 episodes" in out and "seed 2" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
