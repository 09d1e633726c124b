"""Image pipeline: inputs, decoding, faithful pre/post-processing, writers and the batch runner.

The model core never sees files: everything about images, sizes, devices and disks lives here.
"""
