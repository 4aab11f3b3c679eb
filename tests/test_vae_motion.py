"""The motion-weighted reconstruction loss (``train-vae --motion-weight``) and what it needs from the data:
previous frames within episodes, and true-state names for the summary's probe."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from worldmodel.data import DatasetWriter, FrameDataset
from worldmodel.data.mixture import FrameMixture
from worldmodel.frames import FrameSpec, frames_to_tensor
from worldmodel.training.distributed import DistContext
from worldmodel.vae.checkpoint import load_vae
from worldmodel.vae.evaluate import FrameFeed, evaluate
from worldmodel.vae.model import ConvVAE, VAEConfig, motion_weights, vae_loss
from worldmodel.vae.train import TrainVAEConfig, train_vae

BACKGROUND, BALL = 90, 250
SPEC = FrameSpec(height=16, width=16)


def write_episodes(data_dir, lengths, attrs=None, first_value=0):
    """Episodes of ``T + 1`` frames whose every pixel holds the frame's global number (``first_value`` onwards)."""
    value = first_value
    with DatasetWriter(data_dir, env_id="Count-v0", frame_spec=SPEC, attrs=attrs) as writer:
        for e, steps in enumerate(lengths):
            frames = (value + np.arange(steps + 1, dtype=np.uint8))[:, None, None, None] * np.ones(
                (1, 16, 16, 3), np.uint8
            )
            value += steps + 1
            truncated = np.eye(steps, dtype=bool)[-1]
            states = np.zeros((steps + 1, 2), np.float32)
            writer.add_episode(frames, np.zeros((steps, 1), np.float32), np.zeros(steps), np.zeros(steps, bool),
                               truncated, seed=e, episode_index=e, states=states)  # fmt: skip
    return FrameDataset.open(data_dir)


def write_ball_dataset(data_dir, episodes=24, steps=30):
    """A gray field with a 2x2 bright ball bouncing around it; the true state is the ball's (y, x)."""
    rng = np.random.default_rng(0)
    with DatasetWriter(data_dir, env_id="Ball-v0", frame_spec=SPEC, attrs={"state_names": ["ball_y", "ball_x"]}) as w:
        for e in range(episodes):
            pos, vel = rng.uniform(2, 13, 2), rng.choice([-1, 1], 2) * rng.uniform(0.5, 1.0, 2)
            frames = np.full((steps + 1, 16, 16, 3), BACKGROUND, np.uint8)
            states = np.zeros((steps + 1, 2), np.float32)
            for t in range(steps + 1):
                y, x = np.round(pos).astype(int)
                frames[t, y : y + 2, x : x + 2] = BALL
                states[t] = pos
                pos = pos + vel
                bounce = (pos < 0) | (pos > 14)
                vel[bounce], pos = -vel[bounce], np.clip(pos, 0, 14)
            truncated = np.eye(steps, dtype=bool)[-1]
            w.add_episode(frames, np.zeros((steps, 1), np.float32), np.zeros(steps), np.zeros(steps, bool), truncated,
                          seed=e, episode_index=e, states=states)  # fmt: skip
    return FrameDataset.open(data_dir)


def test_motion_weights_mark_pixels_that_changed_by_more_than_eight_levels():
    previous = torch.full((1, 3, 1, 4), 100 / 255)
    x = previous.clone()
    x[0, 0, 0, 1] = 108 / 255  # 8 levels in one channel: noise, not motion
    x[0, 2, 0, 2] = 109 / 255  # 9 levels
    x[0, :, 0, 3] = 0.0  # every channel
    weights = motion_weights(x, previous, 4.0)
    assert weights.shape == (1, 1, 1, 4)
    assert weights[0, 0, 0].tolist() == [1.0, 1.0, 5.0, 5.0]


def test_weighted_reconstruction_loss_counts_each_pixel_by_its_weight():
    config = VAEConfig(height=16, width=16, latent_dim=2)
    x = torch.zeros(2, 3, 16, 16)
    x_hat = x.clone()
    x_hat[0, :, 3, 4] = 1.0  # image 0: a squared error of 3 at one pixel
    x_hat[1, 0, 0, 0] = 0.5  # image 1: 0.25 at another
    mu, logvar = torch.zeros(2, 2), torch.zeros(2, 2)
    weights = torch.ones(2, 1, 16, 16)
    weights[0, 0, 3, 4] = 10.0
    assert vae_loss(x, x_hat, mu, logvar, config).recon.item() == pytest.approx((3 + 0.25) / 2)
    assert vae_loss(x, x_hat, mu, logvar, config, weights).recon.item() == pytest.approx((30 + 0.25) / 2)


def test_held_out_loss_is_weighted_as_in_training_but_its_mse_is_not(tmp_path):
    # Two episodes whose frames alternate between 0 and 200: every pixel changes, except at a first frame.
    with DatasetWriter(tmp_path / "data", env_id="Blink-v0", frame_spec=SPEC) as writer:
        for e in range(2):
            frames = np.zeros((4, 16, 16, 3), np.uint8)
            frames[1::2] = 200
            writer.add_episode(frames, np.zeros((3, 1), np.float32), np.zeros(3), np.zeros(3, bool),
                               np.array([False, False, True]), seed=e, episode_index=e)  # fmt: skip
    ds = FrameMixture([FrameDataset.open(tmp_path / "data")])
    torch.manual_seed(0)
    plain = ConvVAE(VAEConfig(height=16, width=16, latent_dim=2, width_multiplier=0.25))
    weighted = ConvVAE(dataclasses.replace(plain.config, motion_weight=3.0))
    weighted.load_state_dict(plain.state_dict())
    ctx = DistContext(rank=0, world_size=1, device=torch.device("cpu"))
    indices = np.arange(ds.num_frames)  # 8 frames, 6 of them after a change
    before = evaluate(plain, ds, indices, 3, FrameFeed(), ctx)
    after = evaluate(weighted, ds, indices, 3, FrameFeed(), ctx)
    assert after.mse_per_pixel == pytest.approx(before.mse_per_pixel)
    assert after.kl == pytest.approx(before.kl)
    x = frames_to_tensor(ds.frames(indices), SPEC)
    with torch.no_grad():
        error = (plain.decode(plain.encode(x)[0]) - x).pow(2).flatten(1).sum(1)  # (8,) per frame
    first = np.isin(indices, [0, 4])
    expected = (error[first].sum() + 4 * error[~first].sum()) / len(indices)
    assert after.recon == pytest.approx(float(expected), rel=1e-5)
    assert before.recon == pytest.approx(float(error.mean()), rel=1e-5)


def test_motion_weight_must_not_be_negative():
    with pytest.raises(ValueError, match="motion_weight"):
        VAEConfig(motion_weight=-1.0)


def test_previous_in_episode_stays_inside_each_episode(tmp_path):
    ds = write_episodes(tmp_path / "a", [2, 3])  # frames 0-2 and 3-6
    assert ds.previous_in_episode(np.array([0, 1, 2, 3, 4, 6])).tolist() == [0, 0, 1, 3, 3, 5]
    # The frames themselves: frame i holds the value i.
    assert ds.frames(ds.previous_in_episode(np.array([2, 3])))[:, 0, 0, 0].tolist() == [1, 3]
    other = write_episodes(tmp_path / "b", [1], first_value=7)  # frames 7-8 in the mixture
    mixture = FrameMixture([ds, other])
    prev = mixture.previous_in_episode(np.array([6, 7, 8]))
    assert prev.tolist() == [5, 7, 7]
    assert mixture.frames(prev)[:, 0, 0, 0].tolist() == [5, 7, 7]


def test_state_names_come_from_the_collectors_when_they_agree(tmp_path):
    names = {"state_names": ["ball_y", "ball_x"]}
    assert write_episodes(tmp_path / "named", [2], attrs=names).state_names == ("ball_y", "ball_x")
    assert write_episodes(tmp_path / "unnamed", [2]).state_names is None
    mixed = tmp_path / "mixed"
    write_episodes(mixed, [2], attrs=names)
    with DatasetWriter(
        mixed, env_id="Count-v0", frame_spec=SPEC, collector_id="other", attrs={"state_names": ["a", "b"]}
    ) as w:
        w.add_episode(np.zeros((3, 16, 16, 3), np.uint8), np.zeros((2, 1), np.float32), np.zeros(2),
                      np.zeros(2, bool), np.array([False, True]), seed=9, episode_index=0,
                      states=np.zeros((3, 2), np.float32))  # fmt: skip
    ds = FrameDataset.open(mixed)
    assert ds.num_episodes == 2 and ds.state_names is None


@pytest.fixture(scope="module")
def ball_runs(tmp_path_factory):
    """The same tiny VAE trained on the ball dataset for the same steps, without and with motion weights."""
    tmp = tmp_path_factory.mktemp("motion")
    ds = write_ball_dataset(tmp / "data")
    runs = {}
    for weight in (0.0, 20.0):
        out = tmp / f"run{weight:g}"
        config = TrainVAEConfig(str(tmp / "data"), out=str(out), epochs=6, batch_size=32, lr=3e-3, warmup_steps=2,
                                latent_dim=4, width_multiplier=0.5, kl_tolerance=0.5, motion_weight=weight,
                                threads=1, progress=False, tensorboard=False, figures=False, val_fraction=0.25,
                                patience=0)  # fmt: skip
        train_vae(config)
        runs[weight] = out
    return ds, runs


@pytest.mark.filterwarnings("ignore::worldmodel.vae.train.PosteriorCollapseWarning")
def test_motion_weights_make_the_vae_draw_the_moving_ball(ball_runs):
    ds, runs = ball_runs
    x = frames_to_tensor(ds.frames(np.arange(ds.num_frames)), ds.frame_spec)
    ball = x.amax(1) > (BACKGROUND + BALL) / 2 / 255  # (N, 16, 16)
    ball_error = {}
    for weight, out in runs.items():
        vae = load_vae(out / "best.safetensors").vae.eval()
        with torch.no_grad():
            x_hat = vae.decode(vae.encode(x)[0])
        ball_error[weight] = float((x_hat - x).pow(2).sum(1)[ball].mean())
        assert load_vae(out / "best.safetensors").vae.config.motion_weight == weight  # recorded in the checkpoint
    dropped = 3 * ((BALL - BACKGROUND) / 255) ** 2  # the error of drawing background where the ball is
    assert ball_error[0.0] > 0.9 * dropped  # the plain loss leaves the ball out...
    assert ball_error[20.0] < 0.85 * ball_error[0.0]  # ...the weighted one draws part of it


@pytest.mark.filterwarnings("ignore::worldmodel.vae.train.PosteriorCollapseWarning")
def test_summary_names_the_probed_states(ball_runs):
    _, runs = ball_runs
    summary = json.loads((runs[20.0] / "summary.json").read_text())
    assert summary["linear_probe_names"] == ["ball_y", "ball_x"]
    assert len(summary["linear_probe_r2"]) == 2
