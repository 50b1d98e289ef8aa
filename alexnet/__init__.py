"""AlexNet: the network of Krizhevsky, Sutskever and Hinton, "ImageNet Classification with Deep
Convolutional Neural Networks" (NIPS 2012), as faithful, fast, tested PyTorch software."""

__version__ = "0.1.0"
