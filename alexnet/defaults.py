"""The choices and defaults that both the command line and the libraries use, in a module that imports
nothing, so that ``alexnet CMD --help`` shows them without importing torch or numpy."""

CROPS = ("center", "ten")  # the test-time crops: the centre patch, or the ten of section 4.1 (alexnet.inference)
ENCODINGS = {"jpeg": "jpg", "raw": "npy"}  # prepare --format -> file extension inside the shards
SHARD_SIZE = 1000  # images per shard: ~25 MB of JPEG at 256x256, quality 90

# The pixel budget of one decode (--max-pixels): 33.5 megapixels (8192x4096) after JPEG draft mode; at most
# 13 bytes a pixel (greyscale with alpha: docs/data.md), it bounds what a hostile file (a 360 KB PNG claiming
# 13000x13000 pixels) can cost a worker.
MAX_PIXELS = 2**25

# The experiments' protocols that --help states (alexnet.analysis.figure1_sweep, alexnet.analysis.lrn_cifar)
SWEEP_SETTINGS = ("raw-authors", "raw-pytorch", "standardised-authors", "standardised-pytorch")  # inputs-init
LRN_EPOCHS = 160  # section 3.3 on CIFAR-10: about cuda-convnet's 13pct methodology's budget (the net without)
LRN_LR = 0.001  # cuda-convnet's layer-params epsW, every layer
LRN_ANNEAL = (10, 10)  # epochs at lr / 10, then at lr / 100, ending the budget (layer-params-conv-local-11pct.cfg)
