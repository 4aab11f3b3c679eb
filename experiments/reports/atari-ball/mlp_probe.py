"""Is the ball in the latent nonlinearly? An MLP probe beside the linear one, on a VAE's latent means.

``python experiments/reports/atari-ball/mlp_probe.py DATA_DIR VAE [VAE ...]`` prints one JSON line per VAE:
held-out R² per RAM state of the linear probe (``worldmodel.vae.diagnostics.linear_probe_r2``) and of an MLP
(2 hidden layers of 256, Adam, 3,000 steps on standardised targets), both fitted on 4,096 training frames and
scored on 4,096 held-out ones of train-vae's episode split (validation fraction 0.1, seed 0).
"""

import json
import sys

import numpy as np
import torch

from worldmodel.data import FrameDataset
from worldmodel.training.prefetch import chunks
from worldmodel.vae.checkpoint import load_vae
from worldmodel.vae.diagnostics import linear_probe_r2
from worldmodel.vae.encoder import LatentEncoder

FRAMES = 4096


def spread(indices: np.ndarray, n: int) -> np.ndarray:
    return indices[np.linspace(0, len(indices) - 1, min(n, len(indices))).astype(int)]


def mlp_probe_r2(z_train: np.ndarray, s_train: np.ndarray, z_val: np.ndarray, s_val: np.ndarray) -> np.ndarray:
    torch.manual_seed(0)
    zm, zs = z_train.mean(0), z_train.std(0) + 1e-8
    sm, ss = s_train.mean(0), s_train.std(0) + 1e-8
    x, y = (
        torch.tensor((z_train - zm) / zs, dtype=torch.float32),
        torch.tensor((s_train - sm) / ss, dtype=torch.float32),
    )
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                              torch.nn.ReLU(), torch.nn.Linear(256, y.shape[1]))  # fmt: skip
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    for _ in range(3000):
        batch = torch.randint(0, len(x), (256,))
        loss = (net(x[batch]) - y[batch]).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        pred = net(torch.tensor((z_val - zm) / zs, dtype=torch.float32)).numpy() * ss + sm
    return 1.0 - ((pred - s_val) ** 2).sum(0, dtype=np.float64) / ((s_val - s_val.mean(0)) ** 2).sum(
        0, dtype=np.float64
    )


def latents(encoder: LatentEncoder, ds: FrameDataset, indices: np.ndarray) -> np.ndarray:
    return np.concatenate([encoder.encode(ds.frames(idx)) for idx in chunks(indices, 256)])


if __name__ == "__main__":
    ds = FrameDataset.open(sys.argv[1])
    train, val = ds.split_by_episode(0.1, seed=0)
    train, val = spread(train, FRAMES), spread(val, FRAMES)
    s_train, s_val = ds.states(train), ds.states(val)
    for path in sys.argv[2:]:
        encoder = LatentEncoder(load_vae(path), device="cpu")
        z_train, z_val = latents(encoder, ds, train), latents(encoder, ds, val)
        result = {"vae": path, "states": list(ds.state_names or ()),
                  "linear_r2": linear_probe_r2(z_train, s_train, z_val, s_val).round(3).tolist(),
                  "mlp_r2": mlp_probe_r2(z_train, s_train, z_val, s_val).round(3).tolist()}  # fmt: skip
        print(json.dumps(result), flush=True)
