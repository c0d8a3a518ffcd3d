"""Screen: refit the spatial VAE decoder's last convolution in closed form (least squares) after training.

Question: the trained decoder draws a 4-pixel periodic grain on flat areas (Enduro's sky, flat 73, comes back as
-3 -2 +3 -3 ...): its last layer is underfit, and patch realism counts every such pixel. Is the last layer's
least-squares optimum, over the training frames' own features, worth a step at the end of the VAE stage?

    python lab/decoder_refit_screen.py /tmp/res10/enduro--default--seed0/run ... [--kernel 3 5] [--frames 1500]

Reports, on each run's held-out frames: patch realism of the reconstructions, their sharpness over the held-out
frames', and RMS error, before and after.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from dreamvid.dreaming import load
from dreamvid.evaluation import metrics as M
from dreamvid.evaluation.scoring import prepare_source, realism_ratio
from dreamvid.models.spatial import EDGE_WEIGHT

torch.set_grad_enabled(False)


def hidden(vae, frames: np.ndarray) -> torch.Tensor:
    """The decoder's features before its last convolution, fp32."""
    out = []
    for i in range(0, len(frames), 128):
        x = torch.from_numpy(np.asarray(frames[i:i + 128])).permute(0, 3, 1, 2).float() / 255
        out.append(vae.decoder[:-2](vae.encode(x)[0]))
    return torch.cat(out)


def rows(h: torch.Tensor, kernel: int) -> torch.Tensor:
    x = F.unfold(h, kernel, padding=kernel // 2)
    return torch.cat([x.permute(0, 2, 1).reshape(-1, x.shape[1]), torch.ones(x.shape[0] * x.shape[2], 1)], 1)


def cell_weights(images: torch.Tensor, power: float) -> torch.Tensor:
    """Each cell's mean of the VAE loss's contrast weight, to the `power` (0: plain least squares)."""
    contrast = (images - F.avg_pool2d(images, 3, 1, 1, count_include_pad=False)).abs().sum(1, keepdim=True)
    weight = 1 + EDGE_WEIGHT * contrast / contrast.mean().clamp_min(1e-3)
    return F.avg_pool2d(weight, 4).permute(0, 2, 3, 1).reshape(-1, 1).double() ** power


def fit(vae, frames: np.ndarray, kernel: int, ridge: float, power: float) -> torch.Tensor:
    """Weighted least-squares weights (features + 1, 48) of the last layer, accumulated in chunks."""
    gram, cross = None, None
    for i in range(0, len(frames), 128):
        chunk = frames[i:i + 128]
        x = rows(hidden(vae, chunk), kernel).double()
        images = torch.from_numpy(np.asarray(chunk)).permute(0, 3, 1, 2).float() / 255
        y = F.pixel_unshuffle(images, 4).permute(0, 2, 3, 1).reshape(len(x), -1).double()
        wx = x * cell_weights(images, power)
        gram = wx.T @ x if gram is None else gram + wx.T @ x
        cross = wx.T @ y if cross is None else cross + wx.T @ y
    gram += ridge * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype)
    return torch.linalg.solve(gram, cross)


def redraw(vae, frames: np.ndarray, weights: torch.Tensor, kernel: int) -> np.ndarray:
    h = hidden(vae, frames)
    out = (rows(h, kernel).double() @ weights).float().view(len(h), h.shape[2], h.shape[3], -1).permute(0, 3, 1, 2)
    return (F.pixel_shuffle(out, 4).clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--kernel", type=int, nargs="+", default=[3])
    parser.add_argument("--frames", type=int, default=1500)
    parser.add_argument("--ridge", type=float, default=1e-3)
    parser.add_argument("--power", type=float, nargs="+", default=[0.0])
    args = parser.parse_args()
    for run in args.runs:
        dreamer = load(run)
        vae = dreamer.vae.float()
        train, val = dreamer.cache.split("train"), dreamer.cache.split("val")
        trainc, valc = (np.concatenate([np.asarray(part) for part in parts]) for parts in (train, val))
        src = prepare_source(train, val, dreamer.fps)
        picked = trainc[np.linspace(0, len(trainc) - 1, min(args.frames, len(trainc))).astype(int)]
        source_lap = M.laplacian_var(valc).mean()
        rms = lambda rec: float(np.sqrt(((rec.astype(np.float32) - valc) ** 2).mean()))   # noqa: E731
        before = dreamer.decode(dreamer.encode(valc)[0])
        line = (f"{run}: realism {realism_ratio(before, src):.3f} sharpness "
                f"{M.laplacian_var(before).mean() / source_lap:.3f} rms {rms(before):.2f}")
        for kernel in args.kernel:
          for power in args.power:
            after = redraw(vae, valc, fit(vae, picked, kernel, args.ridge, power), kernel)
            line += (f" | k{kernel} w^{power}: realism {realism_ratio(after, src):.3f} sharpness "
                     f"{M.laplacian_var(after).mean() / source_lap:.3f} rms {rms(after):.2f}")
        print(line, flush=True)


if __name__ == "__main__":
    main()
