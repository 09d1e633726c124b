"""Upper bounds on what a command line may ask for, checked before anything is allocated.

Each is far beyond any sensible use, and exists so that a typo (`--size 99999`,
`--batch-size 100000`) is a one-line usage error instead of an attempt to allocate hundreds of GB.
(Bounds on model configs live with the config parser.)
"""

MIN_NETWORK_SIDE = 32  # one multiple of the network's stride
MAX_NETWORK_SIDE = 4096  # pixels a side: a 384x4096 input suits a panorama
# pixels in all: 16,384 ViT tokens at patch 16 (DPT was trained at 576). Attention grows with the
# square of the tokens: beyond this a CPU forward pass takes many minutes and gigabytes, and one
# operation may run for a minute before Ctrl-C can stop it.
MAX_NETWORK_PIXELS = 2048 * 2048
MAX_BATCH_SIZE = 1024
MAX_WORKERS = 256
