"""The training job, top to bottom: frame cache -> VAE -> latents -> RNN, inside one wall-clock budget.

    job.py        train(), Run, TrainingJob: the run folder and config, then the stages in order
    vae_stage.py  VAEStage, encode_latents: the VAE on batches of frames, then every frame's latent
    rnn_stage.py  RNNStage: the dream model on windows of latents, its best held-out epoch kept
    loop.py       StageLoop: the epoch loop every stage shares, and why it stopped; TrainState
    control.py    Stop, Budget, StopRequest, Cadence, step_generator: what the loop consults between steps
    parallel.py   World: the processes of a data-parallel job (one by default) and what they agree on
    launch.py     `train --nproc N`: N processes on this machine through torchrun's elastic agent
    reporting.py  Reporter, Meter: log.jsonl, progress.json, progress bars, on_event
    previews.py   Previews: the pictures in previews/

Every step draws its randomness from a generator seeded by (seed, stage, epoch, step), so a run is
deterministic on CPU and `--resume` after Ctrl-C continues to exactly the result of an uninterrupted run.
"""
from .control import Stop, step_generator
from .job import Run, TrainingJob, train
from .rnn_stage import rnn_train_step
from .vae_stage import vae_train_step

__all__ = ["Run", "Stop", "TrainingJob", "rnn_train_step", "step_generator", "train", "vae_train_step"]
