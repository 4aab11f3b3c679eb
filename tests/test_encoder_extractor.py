"""VAEEncoderExtractor: starts as the VAE encoder, survives SB3's init, adds the VAE loss, refuses wrong inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import PPO

from agents.encoder_extractor import VAEEncoderExtractor, find_extractor, finetune_policy_kwargs
from agents.vec_env import StackConfig, build_vec_env
from worldmodel.vae.checkpoint import load_vae
from worldmodel.vae.encoder import LatentEncoder
from worldmodel.vae.model import ConvVAE, vae_loss

HISTORY = 2


def test_initial_features_are_the_latent_encoders_means_of_each_stacked_frame(toy_vae_path, one_torch_thread):
    stack = StackConfig("worldmodel/DotTarget-v0", encoder="finetune", latent_history=HISTORY)
    venv = build_vec_env(stack, n_envs=2, seed=0, vae=toy_vae_path)
    kwargs = finetune_policy_kwargs({}, toy_vae_path, history=HISTORY, standardize=True, drop_inactive=True)
    model = PPO("MlpPolicy", venv, policy_kwargs=kwargs, n_steps=8, batch_size=16, device="cpu")  # ortho_init on
    assert type(venv).__name__ == "VecTransposeImage" and model.env.observation_space == venv.observation_space
    venv.reset()
    obs, *_ = venv.step(np.array([1, 2]))  # frames differ from step to step: (2, 2 * 3, 32, 32) uint8
    features = model.policy.extract_features(model.policy.obs_to_tensor(obs)[0]).detach().numpy()
    encoder = LatentEncoder(toy_vae_path, device="cpu", normalize=True, drop_inactive=True)
    frames = obs.reshape(2 * HISTORY, 3, 32, 32).transpose(0, 2, 3, 1)  # (env, frame) order, HWC
    expected = encoder.encode(np.ascontiguousarray(frames)).reshape(2, -1)  # oldest frame's latents first
    assert features.shape == (2, HISTORY * encoder.latent_dim)
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-3)
    assert not np.allclose(expected[:, : encoder.latent_dim], expected[:, encoder.latent_dim :])  # really 2 frames
    venv.close()


def test_aux_weight_adds_the_vae_loss_gradient(toy_vae_path):
    space = spaces.Box(0, 255, (3, 32, 32), np.uint8)
    obs = torch.randint(0, 256, (4, 3, 32, 32)).float()
    weight = 0.01
    plain = VAEEncoderExtractor(space, toy_vae_path)
    aux = VAEEncoderExtractor(space, toy_vae_path, aux_recon_weight=weight)
    torch.manual_seed(1)
    aux(obs).sum().backward()
    plain(obs).sum().backward()
    reference = VAEEncoderExtractor(space, toy_vae_path)
    x = obs / 255.0
    mu, logvar = reference.vae.encode(x)
    torch.manual_seed(1)  # the same reparameterisation noise as the aux forward pass
    x_hat = reference.vae.decode(ConvVAE.reparameterize(mu, logvar))
    (mu.sum() + weight * vae_loss(x, x_hat, mu, logvar, reference.vae.config).total).backward()
    for (name, p_aux), p_plain, p_ref in zip(
        aux.vae.named_parameters(), plain.vae.parameters(), reference.vae.parameters(), strict=True
    ):
        torch.testing.assert_close(p_aux.grad, p_ref.grad, rtol=1e-4, atol=1e-5, msg=name)
        if name.startswith("decoder") or name.startswith("fc_decode"):
            assert p_plain.grad is None and p_aux.grad.abs().sum() > 0  # only the aux loss reaches the decoder
    with torch.no_grad():  # rollouts and predict: no aux loss computed, features unchanged
        torch.testing.assert_close(aux(obs), plain(obs))


def test_reconstruct_decodes_the_finetuned_means(toy_vae_path):
    extractor = VAEEncoderExtractor(spaces.Box(0, 255, (3, 32, 32), np.uint8), toy_vae_path)
    frames = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    expected = LatentEncoder(load_vae(toy_vae_path), device="cpu").reconstruct(frames)
    np.testing.assert_array_equal(extractor.reconstruct(frames), expected)
    with torch.no_grad():
        extractor.vae.fc_mu.bias.add_(1.0)  # a changed encoder changes the reconstruction
    assert not np.array_equal(extractor.reconstruct(frames), expected)


def test_wrong_inputs_are_explained(toy_vae_path):
    with pytest.raises(ValueError, match=r"channels-first uint8 frames of shape \(3, 32, 32\).*VecTransposeImage"):
        VAEEncoderExtractor(spaces.Box(0, 255, (32, 32, 3), np.uint8), toy_vae_path)
    with pytest.raises(ValueError, match=r"sets policy_kwargs \['features_extractor_class'\]"):
        finetune_policy_kwargs({"features_extractor_class": VAEEncoderExtractor}, toy_vae_path)
    with pytest.raises(ValueError, match="not trained with --encoder finetune"):
        find_extractor(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"cannot be combined with --pixels.*--include-action"):
        StackConfig("worldmodel/DotTarget-v0", encoder="finetune", pixels=True, include_action=True)
    with pytest.raises(ValueError, match="shorter history"):
        build_vec_env(StackConfig("worldmodel/DotTarget-v0", encoder="finetune", latent_history=11), n_envs=1,
                      seed=0, vae=toy_vae_path)  # fmt: skip
