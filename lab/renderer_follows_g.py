"""Diagnostic (issue 19, River Raid's freezing): does the renderer follow g? 300 steps from a source map, each
next map drawn from the last drawn one given the source's next g / a motion-model draw while the motion model is
fed the source's g (teacher-forced) / its centre: cells changed a step and agreement with the source after 300.

    python lab/renderer_follows_g.py /tmp/res10-own/riverraid--default--seed0/run [first frame]

2026-12-07, River Raid seed 0 from frame 0 / 1200: the source's g: 95% / 83% of cells agree after 300 steps; the
motion model's draws: 93% / 84%; its centres: 94% / 83%. The renderer follows g; a free-running dream's freeze
comes from the motion model's own loop.
"""
import sys
import torch
import dreamvid
torch.set_grad_enabled(False)
run = sys.argv[1]
d = dreamvid.load(run, device="cpu")
m = d.rnn
mu = d.latents["mu"]
start = int(sys.argv[2]) if len(sys.argv) > 2 else 0
maps = m.fsq.code_values(m.fsq.code(mu[start:start + 400]))
gtrue = m.layout(maps)
gen = torch.Generator().manual_seed(0)
for mode in ("true g", "sampled g (teacher-forced motion)", "center g (teacher-forced)", "sampled g spread 1"):
    z = maps[:1]; state = None; drawn, dist = [], []
    for t in range(300):
        params, state = m.motion.step(gtrue[t:t+1], state)
        u = torch.rand(m.config.sampling_steps, 1, 1, *maps.shape[-2:], generator=gen)
        if mode == "true g":
            g = gtrue[t+1:t+2]
        else:
            noise = (torch.rand(1, 32, generator=gen), torch.randn(1, 32, generator=gen))
            s, c = m.motion.sample_with_center(params, 0.7, noise=noise)
            g = c if mode.startswith("center") else (c + 0.5 * (s - c) if "spread 1" not in mode else s)
        dist.append((g - gtrue[t+1:t+2]).norm().item())
        new = m.renderer.fill(m.renderer.features(z, g), m.config.sampling_steps, 0.7, u)
        drawn.append((m.fsq.code(new) != m.fsq.code(z)).float().mean().item())
        z = new
    true_change = (m.fsq.code(maps[1:301]) != m.fsq.code(maps[:300])).float().mean().item()
    agree = (m.fsq.code(z) == m.fsq.code(maps[300:301])).float().mean().item()
    print(f"{mode:38s} changed {sum(drawn)/300:.3f} (true {true_change:.3f}) |g - true g| {sum(dist)/300:.2f} agree@300 {agree:.2f}")
