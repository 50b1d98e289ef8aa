"""Every subcommand's options, ``alexnet.options.<command>(parser)``, in a module that imports neither torch nor
numpy nor matplotlib (``--help`` at once); the texts several commands share are the constants below."""

import argparse

from alexnet.defaults import CROPS, ENCODINGS, LRN_ANNEAL, LRN_EPOCHS, LRN_LR, MAX_PIXELS, SHARD_SIZE, SWEEP_SETTINGS

MODEL = "a model file, training checkpoint or run folder (its checkpoints/best.pt)"
PICK_DEVICE = "cuda, mps or cpu (default: cuda, else mps, else cpu)"
AUTO_DEVICE = "cpu, cuda, ... (default: auto)"
JSON_FILE = "also write the numbers to FILE ('-': standard output)"


def _max_pixels(a, what: str) -> None:
    a("--max-pixels", type=int, default=MAX_PIXELS, metavar="N", help=f"{what} an image that would decode to more "
      f"than N pixels, after reduced-scale JPEG decoding; bounds the memory one image takes (default: {MAX_PIXELS})")


def train(parser: argparse.ArgumentParser) -> None:
    """``alexnet train``'s options: TrainConfig's settings, beside it in alexnet.train.cli (light)."""
    from alexnet.train.cli import add_arguments

    add_arguments(parser)


def evaluate(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("checkpoints", nargs="+", metavar="CHECKPOINT", help="model file(s), training checkpoint(s) or run folder(s) "
      "(their checkpoints/best.pt); several are an ensemble that averages their softmax outputs (Table 2's '5 CNNs')")
    a("--data", required=True, metavar="PREPARED",
      help="a dataset made by `alexnet prepare`, or a name (imagenette, cifar10) prepared on first use")
    a("--split", default="val", help="the split to evaluate on (default: val)")
    a("--crops", choices=CROPS, default="ten", help="ten: the paper's protocol, the softmax averaged over the "
      "four corner and centre patches and their reflections (section 4.1; default); center: the central patch "
      "only (faster)")
    a("--batch-size", type=int, default=128, help="images per batch (default 128; x10 crops)")
    a("--device", help=PICK_DEVICE)
    a("--workers", type=int, help="decoding processes (default: one per core)")
    a("--json", action="store_true", help="print the result as one JSON object")


def predict(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("checkpoint", metavar="CHECKPOINT", help=MODEL)
    a("images", nargs="+", metavar="IMAGE", help="image files (any format PIL reads)")
    a("--crops", choices=CROPS, default="ten", help="ten: average the softmax over the four corner and centre "
      "patches and their reflections (section 4.1; default); center: the central patch only")
    a("--top", type=int, default=5, help="how many classes to show per image (default 5)")
    a("--mean", metavar="FILE", help="the training set's mean image (mean.npy, or the prepared dataset folder "
      "holding it), for a model file that holds none")
    a("--device", help=PICK_DEVICE)
    _max_pixels(a, "refuse")
    a("--json", action="store_true", help="print the result as JSON")


def prepare(parser: argparse.ArgumentParser) -> None:
    parser.usage = "%(prog)s SOURCE OUT [options]\n       %(prog)s --verify OUT"
    a = parser.add_argument
    a("source", metavar="SOURCE", nargs="?", help="an image folder (train/<class>/..., val/<class>/..., or "
      "<class>/... alone), the folder holding the ILSVRC-2012 tars and devkit (or their extracted forms, or "
      "Kaggle's layout), a .tar.gz of one of these, or a name: imagenette, cifar10 (downloaded)")
    a("out", metavar="OUT", nargs="?", help="folder to write the prepared dataset to")
    a("--verify", metavar="OUT", help="check every file of the prepared dataset OUT against the checksums recorded "
      "when it was made; name each damaged one (exit status 1)")
    a("--restart", action="store_true", help="discard what an earlier run left in OUT (unfinished, or finished "
      "with other options) and prepare afresh")
    a("--size", type=int, default=256, help="side of the stored square images, 8 to 1024 (default: 256, as the paper)")
    a("--format", dest="encoding", choices=ENCODINGS, default="jpeg",
      help="how images are stored: jpeg (default) or raw uint8 arrays (.npy)")
    a("--quality", type=int, default=90, help="JPEG quality (default: 90)")
    a("--workers", type=int, help="worker processes (default: one per core; 0: prepare in this process)")
    a("--shard-size", type=int, default=SHARD_SIZE, help=f"images per shard (default: {SHARD_SIZE})")
    a("--stats-sample", type=int, metavar="N", help="estimate the mean image and the PCA from N random training "
      "images (default: exact, over all of them)")
    a("--strict", action="store_true", help="stop at the first bad file instead of skipping and listing it")
    _max_pixels(a, "skip (and list)")
    a("--cache-dir", help="where named datasets are downloaded (default: $ALEXNET_CACHE or ~/.cache/alexnet)")


def summary(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--arch", default="alexnet", help="architecture name (default: alexnet)")
    a("--input-size", type=int, help="input side in pixels (default: the architecture's own, 227 for alexnet)")
    a("--list", action="store_true", help="list the architectures and exit (as alexnet models)")
    a("--json", action="store_true", help="print JSON instead of a table")


def models(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def export(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("model", metavar="MODEL", help=MODEL)
    a("out", metavar="OUT", help="the ONNX file to write (.onnx): input 'images' [batch, 3, S, S] as the network "
      "takes it (the mean image already subtracted), output 'logits' [batch, classes]; any batch size (needs onnx "
      "and onnxruntime: pip install 'alexnet[convert]')")


def convert(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("source", choices=["torchvision", "onnx", "caffe"], help="torchvision: the state dict torchvision publishes "
      "for models.alexnet (IMAGENET1K_V1); onnx: the ONNX model zoo's bvlcalexnet-*.onnx; caffe: Caffe's "
      "bvlc_alexnet.caffemodel (onnx needs the extra: pip install 'alexnet[convert]'; caffe needs nothing more)")
    a("weights", metavar="FILE",
      help="the downloaded file: alexnet-owt-7be5be79.pth, bvlcalexnet-12.onnx or bvlc_alexnet.caffemodel")
    a("out", metavar="OUT", help="the model file to write (.pt)")
    a("--mean", metavar="FILE", help="onnx and caffe: Caffe's mean image, imagenet_mean.binaryproto (from "
      "get_ilsvrc_aux.sh) or ilsvrc_2012_mean.npy, or any .npy of shape [3, 256, 256] (BGR, 0-255) or [3]; "
      "default: Caffe's per-channel mean (BGR 104.0, 116.7, 122.7)")


def bench(parser: argparse.ArgumentParser) -> None:
    """``alexnet bench data|model|train``'s options, beside the benchmarks in alexnet.bench.cli (light)."""
    from alexnet.bench.cli import add_arguments

    add_arguments(parser)


def figures(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("source", metavar="RUN_DIR_OR_CHECKPOINT",
      help="a run folder (its checkpoints/best.pt is used) or a model/checkpoint file")
    a("--data", metavar="PREPARED", help="prepared dataset (alexnet prepare) or a dataset name (imagenette, "
      "cifar10) for Figure 4; without it only kernels.png and curves.png are drawn")
    a("--out", metavar="DIR", help="output folder (default: RUN_DIR/figures, or figures/ beside the checkpoint)")
    a("--images", type=int, default=8, help="validation images in predictions.png (default 8)")
    a("--queries", type=int, default=5, help="query images in neighbours.png (default 5)")
    a("--neighbours", type=int, default=6, help="training images shown per query (default 6, as the paper)")
    a("--train-limit", type=int, metavar="N", help="search a random sample of N training images instead of all of them")
    a("--batch-size", type=int, default=128, help="feature extraction batch (default 128)")
    a("--workers", type=int, default=2, help="data loading processes (default 2)")
    a("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: auto)")
    a("--seed", type=int, default=0, help="which validation images are drawn (default 0)")


def experiment(parser: argparse.ArgumentParser) -> None:
    parser.description = ("the paper's experiments: relu-vs-tanh (Figure 1), lrn (section 3.3) and ablations "
                          "(sections 3 and 4); each writes its numbers and its table into --out")
    sub = parser.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    a = sub.add_parser("relu-vs-tanh", help="Figure 1: ReLU reaches 25%% CIFAR-10 training error ~6x sooner than "
                       "tanh (section 3.1), in the authors' cuda-convnet setup").add_argument
    a("--data", default="cifar10", help="'cifar10' (downloaded once), a prepared dataset or an image folder "
      "ROOT/<class>/<image> (default: cifar10)")
    a("--epochs", type=int, default=35, help="epochs per run (default 35, Figure 1's axis)")
    a("--limit", type=int, metavar="N",
      help="use a random N of the training images (default: all 50,000, as the paper)")
    a("--protocol", choices=("authors", "standardised"), default="authors", help="authors (default): raw 0-255 "
      "pixels minus the mean image, each layer initialised from its own Gaussian (conv1 std 0.0001, the others "
      "0.01), biases' learning rate 2x the weights', as cuda-convnet's layers-18pct; standardised: inputs also "
      "divided by one global std, PyTorch's default initialisation, one learning rate")
    a("--inputs", choices=("raw", "standardised"), help="override the protocol's input scaling")
    a("--init", choices=("authors", "pytorch"), help="override the protocol's initialisation")
    a("--bias-lr", type=float, metavar="X",
      help="override the protocol's ratio of the biases' learning rate to the weights' (authors: 2)")
    a("--lrs", type=float, nargs="+", metavar="LR", help="the learning-rate grid searched for each activation, "
      "grown past an edge winner (default 0.001 0.003 0.01 0.03; momentum 0.9, batch-mean gradient)")
    a("--search-epochs", type=int, default=4, help="epochs each candidate learning rate trains; the lowest "
      "training error over the last of them wins (default 4: on all 50,000 images it picks the rate that is "
      "also ahead at 35 epochs, where 2 picked tanh's other one)")
    a("--seeds", type=int, nargs="+", default=[0, 1], metavar="SEED", help="one run per activation and seed "
      "(initial weights, batch order); the search uses the first (default 0 1)")
    a("--search-seed", type=int, metavar="SEED", help="the seed of the learning-rate search (default: the first "
      "of --seeds; give it when one process runs later seeds only)")
    a("--activations", nargs="+", choices=("relu", "tanh"), default=["relu", "tanh"], help="run only these "
      "(e.g. one per process; the runs are stored in OUT/runs and a last call with both draws the figure) "
      "(default: both)")
    a("--after-crossing", type=float, metavar="EPOCHS",
      help="stop a run this many epochs after it reaches 25%% (default: train every epoch)")
    a("--sweep", nargs="*", choices=SWEEP_SETTINGS, metavar="SETTING", help="measure the ratio for "
      "raw/standardised inputs x authors'/PyTorch init x tanh at its own or ReLU's learning rate (first seed; "
      f"sweep.json, sweep.md, sweep.png); name settings ({', '.join(SWEEP_SETTINGS)}) to run only those (e.g. one "
      "per process; a last --sweep with none named writes the table)")
    a("--batch-size", type=int, default=128, help="default 128, as the paper")
    a("--device", default="auto", help=AUTO_DEVICE)
    a("--out", default="runs/relu-vs-tanh", metavar="DIR", help="where figure1.png, relu-vs-tanh.json and the "
      "runs go (default runs/relu-vs-tanh); run again, the command redoes only the runs that are missing")
    a("--json", metavar="FILE", help=JSON_FILE)

    _experiment_lrn(sub)

    from alexnet.analysis.ablations import VARIANTS
    from alexnet.train.cli import add_arguments as add_train_arguments

    p = sub.add_parser("ablations", help="the paper's network against its variants, same budget, beside the "
                       "paper's differences; takes every option of alexnet train")
    add_train_arguments(p)
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS), metavar="VARIANT",
                   help=f"which runs (default: all): {', '.join(VARIANTS)}")
    p.add_argument("--drop-layer", choices=("conv3", "conv4", "conv5"), default="conv4",
                   help="the middle layer no-middle-conv removes (default conv4)")


def _experiment_lrn(sub) -> None:
    """``alexnet experiment lrn``: section 3.3's CIFAR-10 result (alexnet.analysis.lrn_cifar)."""
    p = sub.add_parser(
        "lrn", help="section 3.3: CIFAR-10 test error with and without response normalisation (paper: 11%% and "
        "13%%), cuda-convnet's layers-conv-local nets, equal budgets, over seeds",
        description="Trains cuda-convnet's layers-conv-local-13pct net (no normalisation) and its first 11pct net "
        "(cross-map normalisation after conv1 and conv2) for the same epochs with each seed, on random 24x24 crops "
        "with mirroring of raw mean-subtracted pixels, momentum SGD with cuda-convnet's per-layer rates and weight "
        "decay (the budget ending at a tenth and a hundredth of the rate, as its methodology), and reports their "
        "ten-view test errors, means, spreads and the paired difference beside the paper's. Finished runs are kept "
        "in OUT/runs: the same command run again redoes only the unfinished ones.")
    a = p.add_argument
    a("--data", default="cifar10", help="'cifar10' (downloaded once; its test set is the official test_batch), a "
      "prepared dataset (its val split is the test set) or an image folder ROOT/<class>/<image> (then pass "
      "--test-data or --holdout) (default: cifar10)")
    test = p.add_mutually_exclusive_group()
    test.add_argument("--test-data", metavar="FOLDER",
                      help="the test images of an image-folder --data: FOLDER/<class>/<image>, the same classes")
    test.add_argument("--holdout", type=float, metavar="F",
                      help="test on a random share F (0 < F < 1) of the training images instead (default: off)")
    a("--epochs", type=int, default=LRN_EPOCHS, help=f"epochs per run, the same for both nets (default {LRN_EPOCHS}: "
      "about the authors' budget for the 13%% net, a GPU's job; their 11%% net had about 500)")
    a("--seeds", type=int, nargs="+", default=[0, 1, 2], metavar="SEED",
      help="one run of each net per seed: initial weights, batch order, crops (default 0 1 2)")
    a("--variants", nargs="+", choices=("without", "with"), default=["without", "with"], help="train only these "
      "nets' runs (default: both); processes given one each share the work in one --out, and a last call with both "
      "assembles the comparison")
    a("--lr", type=float, default=LRN_LR, help=f"weight learning rate, biases twice it (default {LRN_LR:g}, "
      "cuda-convnet's epsW; epsB 0.002), until the --anneal epochs")
    a("--anneal", type=int, nargs=2, default=list(LRN_ANNEAL), metavar=("A", "B"), help="the last A + B of the "
      "--epochs: A at lr / 10, then B at lr / 100 (cuda-convnet's methodology ended so; default "
      f"{LRN_ANNEAL[0]} {LRN_ANNEAL[1]}, as there; 0 0: one rate throughout)")
    a("--limit", type=int, metavar="N", help="use a random N of the training images (default: all)")
    a("--batch-size", type=int, default=128, help="default 128, as cuda-convnet")
    a("--device", default="auto", help=AUTO_DEVICE)
    a("--out", default="runs/lrn", metavar="DIR",
      help="where lrn.json, lrn.md, lrn.png and the run records go (default runs/lrn)")
    a("--json", metavar="FILE", help=JSON_FILE)


def report(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("runs", nargs="+", metavar="RUN_DIR", help="run folders and experiment output folders")
    a("--out", default="report.html", help="the HTML file to write (default report.html)")
    a("--title", default="AlexNet: runs beside the paper", help="the page's title")


def retrieval(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("source", nargs="?", metavar="RUN_DIR_OR_CHECKPOINT",
      help="the network whose fc7 features are compared (omit to reuse DIR's features)")
    a("--data", metavar="PREPARED", help="prepared dataset: train split is searched, val split gives the queries")
    a("--out", required=True, metavar="DIR", help="features, codes and retrieval.json go here")
    a("--bits", type=int, default=256, help="code length, a multiple of 8 (default 256)")
    a("--hidden", type=int, default=1024, help="autoencoder hidden units (default 1024)")
    a("--k", type=int, default=10, help="neighbours retrieved per query (default 10)")
    a("--epochs", type=int, default=10, help="autoencoder epochs (default 10)")
    a("--train-limit", type=int, metavar="N", help="search a random N training images (default: all)")
    a("--queries", type=int, default=1000, help="validation images used as queries (default 1000)")
    a("--batch-size", type=int, default=128, help="feature extraction batch (default 128)")
    a("--workers", type=int, default=2, help="data loading processes (default 2)")
    a("--device", default="auto", help=AUTO_DEVICE)
    a("--seed", type=int, default=0, help="image samples and autoencoder (default 0)")
