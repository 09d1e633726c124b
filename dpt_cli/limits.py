"""Upper bounds on what a command line may ask for, checked before anything is allocated.

Each is far beyond any sensible use, and exists so that a typo (`--size 99999`,
`--batch-size 100000`) is a one-line usage error instead of an attempt to allocate hundreds of GB.
(Bounds on model configs live with the config parser.)
"""

MAX_NETWORK_SIDE = 4096  # pixels; 65,536 ViT tokens at patch 16, far past what DPT was trained on
MAX_BATCH_SIZE = 1024
MAX_WORKERS = 256
