"""Train a driving policy with Stable-Baselines3 PPO on the built-in sample scenarios.

Usage:
    pip install torch stable-baselines3        # optional dependencies (PyTorch's CPU build is enough)
    python examples/train_ppo.py [--timesteps 100000] [--n-envs 2] [--eval-episodes 18]

The built-in sample (``scenarios/sample/ngsim_us101``: NGSIM US-101, every car as an ego) is the
scenario library; each reset draws one of its scenarios with the env's seeded generator. The
envs are ``drivetwin/Replay-v0`` (log-replay traffic, continuous actions, ``state`` observations
flattened for an MLP) in a ``SubprocVecEnv`` with ``VecNormalize``. Before and after training
the script prints the mean episode reward, the mean route completion (the share of the logged
ego's path driven) and the collision and off-road rates of the deterministic policy over the
sample scenarios in turn, so anyone can see the env is learnable.
Not part of the CI suite.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gymnasium  # noqa: E402
import numpy as np  # noqa: E402

import scenarios  # noqa: E402
import sim  # noqa: E402,F401  (registers the env ids)

SAMPLE = Path(scenarios.__file__).resolve().parent / "sample" / "ngsim_us101"
CONFIG: dict[str, Any] = {
    "observation": ["state"],
    "num_agents_obs": 6,
    "route_points": 10,
    "action": "continuous",
    "reward": {"progress": 0.1, "collision": -5.0, "offroad": -5.0, "comfort": -0.002, "goal": 1.0},
}


def make_env(seed: int = 0) -> gymnasium.Env:
    """One env over the sample library, its observation flattened for an MLP policy."""
    from scenarios.library import ScenarioLibrary

    env = gymnasium.make("drivetwin/Replay-v0", library=ScenarioLibrary(SAMPLE), config=CONFIG)
    env = gymnasium.wrappers.FlattenObservation(env)
    env.reset(seed=seed)
    return env


def evaluate(model: Any, normalizer: Any, episodes: int, seed: int = 1000) -> dict[str, float]:
    """Mean episode reward, route completion, collision and off-road rates of ``model``
    (deterministic actions) over the sample's scenarios in turn."""
    from scenarios.library import ScenarioLibrary

    ids = ScenarioLibrary(SAMPLE).ids()
    env = make_env(seed)
    rewards, completion, endings = [], [], []
    for i in range(episodes):
        obs, info = env.reset(seed=seed + i, options={"scenario": ids[i % len(ids)]})
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(normalizer.normalize_obs(obs), deterministic=True)
            obs, reward, terminated, truncated, info = env.step(action)
            total += float(reward)
            done = terminated or truncated
        rewards.append(total)
        completion.append(min(max(info["route_completion"], 0.0), 1.0))
        endings.append(info["termination"])
    env.close()
    return {
        "reward": float(np.mean(rewards)),
        "completion": float(np.mean(completion)),
        "collision": endings.count("collision") / episodes,
        "offroad": endings.count("offroad") / episodes,
    }


def _line(label: str, m: dict[str, float]) -> str:
    return (f"{label:24s} mean episode reward {m['reward']:7.3f}   route completion {m['completion']:6.1%}   "
            f"collisions {m['collision']:5.1%}   off-road {m['offroad']:5.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description="PPO on drivetwin's built-in sample scenarios")
    parser.add_argument("--timesteps", type=int, default=100_000)
    parser.add_argument("--n-envs", type=int, default=2)
    parser.add_argument("--eval-episodes", type=int, default=18)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", type=Path, default=None, help="where to save the trained model (.zip)")
    args = parser.parse_args()
    try:
        from stable_baselines3 import PPO
        from stable_baselines3.common.env_util import make_vec_env
        from stable_baselines3.common.vec_env import SubprocVecEnv, VecNormalize
    except ImportError:
        raise SystemExit("this example needs Stable-Baselines3 and PyTorch: pip install torch stable-baselines3") from None

    vec = make_vec_env(make_env, n_envs=args.n_envs, seed=args.seed, vec_env_cls=SubprocVecEnv)
    vec = VecNormalize(vec, norm_obs=True, norm_reward=True, clip_obs=10.0)
    model = PPO("MlpPolicy", vec, n_steps=1024, batch_size=128, learning_rate=3e-4, gamma=0.99, ent_coef=0.0,
                policy_kwargs={"log_std_init": -1.0}, seed=args.seed, verbose=0)
    print(_line("before training:", evaluate(model, vec, args.eval_episodes)))
    model.learn(total_timesteps=args.timesteps)
    vec.training = False
    print(_line(f"after {args.timesteps} steps:", evaluate(model, vec, args.eval_episodes)))
    if args.save:
        model.save(args.save)
    vec.close()


if __name__ == "__main__":
    main()
