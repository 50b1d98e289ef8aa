"""``alexnet train``: the paper's recipe (section 5) from the command line; options that depart from it
say so in their help."""

import argparse

from alexnet.train.config import (AMP_MODES, DECODERS, OPTIMIZERS, PRESETS, SCHEDULES, TrainConfig, config_from_args,
                                  resume_paths)

D = TrainConfig()  # the defaults, quoted in the help


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("Options marked [departs] change the paper's recipe. Short options as in pytorch/examples' "
                     "imagenet/main.py: -a (--arch), -b (--batch-size), -j (--workers), --learning-rate (--lr), "
                     "--wd (--weight-decay). Single machine, several GPUs: torchrun --nproc_per_node=N -m alexnet "
                     "train ... (--batch-size is the global batch). See docs/training.md.")
    a = parser.add_argument
    # What to train on, where, and from which settings.
    a("--config", metavar="FILE", help="settings from a YAML (.yaml, .yml), JSON (.json) or TOML (.toml) "
      "file; options given here override it")
    a("--preset", choices=["auto", *PRESETS], help="full: the paper's recipe; quick: a 2-core-CPU run that "
      f"shows learning in about ten minutes ({', '.join(f'{k}={v}' for k, v in PRESETS['quick'].items())}; amp "
      "only where the CPU computes bfloat16 natively: AVX512-BF16 or AMX) [departs]; fast: the paper's recipe "
      "with a GPU's speed options (amp=bf16, channels-last, compile) [departs: bfloat16 arithmetic]; auto: "
      "quick when the device is the CPU, else full (default: auto)")
    a("--data", help="a prepared folder (alexnet prepare), imagenette or cifar10 (downloaded and prepared "
      f"on first use), or synthetic (random images, offline) (default: {D.data})")
    a("-a", "--arch", help=f"named architecture (alexnet models) (default: {D.arch}, the paper's)")
    a("--model-option", action="append", default=[], metavar="KEY=VALUE", dest="model_option",
      help="an option of the network, e.g. lrn=false or dropout=0.3 (repeatable; values read as YAML, then "
      "strictly as the option's type: booleans true/false, yes/no or 1/0)")
    a("--out", metavar="RUN_DIR", help=f"where the run writes config.yaml, metrics.jsonl, tensorboard/ and "
      f"checkpoints/ (default: {D.out})")
    a("--resume", metavar="RUN_DIR|CHECKPOINT", help="continue the run in RUN_DIR exactly where it stopped "
      "(mid-epoch included), with its saved configuration, from its checkpoints/last.pt or the checkpoint "
      "file given (RUN_DIR/checkpoints/FILE); options given here override it")
    a("--seed", type=int, help=f"seed of initialisation, data order and dropout (default: {D.seed})")
    a("--device", help="cpu, cuda, cuda:N or mps (default: cuda, else mps, else cpu)")
    a("-j", "--workers", type=int, help="loader processes per training process; 0 loads in the training process "
      "itself (default: the cores shared among the processes on this machine, less one for each process on a GPU)")
    a("--decode", choices=DECODERS, help="where JPEGs are decoded: workers (the loader's processes, default) or "
      "device (the training device: nvJPEG through torchvision on CUDA; for machines with few cores per GPU) "
      "(speed only)")
    # The paper's recipe (section 5) and augmentation (section 4.1), and what departs from them.
    a("--epochs", type=int, help=f"passes over the training set (default: {D.epochs}, the paper's)")
    a("-b", "--batch-size", type=int, help=f"global batch, split across data-parallel processes "
      f"(default: {D.batch_size}, the paper's)")
    a("--lr", "--learning-rate", type=float, help=f"initial learning rate (default: {D.lr}, the paper's)")
    a("--momentum", type=float, help=f"(default: {D.momentum}, the paper's)")
    a("--weight-decay", "--wd", type=float, help=f"(default: {D.weight_decay}, the paper's)")
    a("--optimizer", choices=OPTIMIZERS, help="paper: section 5's update rule (default); torch-sgd: "
      "torch.optim.SGD, velocity in gradient units, differs just after a rate change [departs]")
    a("--schedule", choices=SCHEDULES, help="plateau: divide by 10 when validation error stalls, at most "
      "--max-reductions times (the paper's, default); step: divide by 10 every --step-epochs [departs]; "
      "cosine: linear warm-up for --warmup-epochs then cosine to 0 [departs]; krizhevsky2012: the authors' "
      "recorded 2012 run, 0.01 to epoch 23, 0.001 to 49, 0.0001 after [departs from the text, not the run]")
    a("--patience", type=int, help=f"plateau: epochs without a better validation top-1 error before a "
      f"reduction (default: {D.patience}; the paper gives no number)")
    a("--max-reductions", type=int, help=f"plateau: at most this many divisions by 10 (default: {D.max_reductions}, "
      "the paper's)")
    a("--step-epochs", type=int, help=f"step: epochs between divisions (default: {D.step_epochs})")
    a("--warmup-epochs", type=float, help=f"cosine: warm-up epochs (default: {D.warmup_epochs})")
    a("--bias-lr-mult", type=float, help="learning-rate multiplier for biases; the authors' code used 2 "
      f"(default: {D.bias_lr_mult}, the paper's one rate) [departs unless 1]")
    a("--fc8-lr-mult", type=float, help="learning-rate multiplier for the output layer (fc8); the quick "
      f"preset uses 0.2 for few classes (default: {D.fc8_lr_mult}, the paper's one rate) [departs unless 1]")
    a("--bias-no-decay", action="store_true", default=None, help="no weight decay on biases, as the authors' code "
      "[departs]")
    a("--pca-std", type=float, help=f"PCA colour augmentation: alpha ~ N(0, PCA_STD); 0 switches it off "
      f"(default: {D.pca_std}, the paper's section 4.1) [departs unless 0.1]")
    a("--no-random-crop", dest="random_crop", action="store_false", default=None,
      help="train on the centre crop instead of random crops (section 4.1 ablation) [departs]")
    a("--no-flip", dest="flip", action="store_false", default=None,
      help="no horizontal reflections (section 4.1 ablation) [departs]")
    a("--limit", type=int, help="training images per epoch (default: all) [departs]")
    a("--val-limit", type=int, help="validation images (default: all) [departs]")
    # Speed (the same function computed), reproducibility, checkpoints and the progress display.
    a("--amp", choices=AMP_MODES, help="mixed precision; fp16 uses loss scaling; LRN stays float32 "
      "(default: float32, as the paper) [departs]")
    a("--channels-last", action=argparse.BooleanOptionalAction, default=None, help="channels-last memory "
      "layout (speed only; default: on for cpu and cuda, where it pays)")
    a("--compile", action="store_true", default=None, help="torch.compile the network (speed only)")
    a("--deterministic", action="store_true", default=None, help="deterministic GPU kernels, no cudnn "
      "autotuning, no TF32: reproducible GPU runs (slower)")
    a("--checkpoint-minutes", type=float, help=f"also save checkpoints/last.pt this often; 0: after every "
      f"step (default: {D.checkpoint_minutes}; always after every epoch)")
    a("--model-parallel", action="store_true", default=None, help="the two towers on two GPUs, as "
      "section 3.2 (needs two devices per process; combines with DDP across machines)")
    a("--log-every", type=int, help=f"steps between progress-bar loss readings (default: {D.log_every})")


def run(args: argparse.Namespace) -> int:
    from alexnet.train.loop import train

    return train(config_from_args(args), resume=resume_paths(args.resume)[1] if args.resume else None)
