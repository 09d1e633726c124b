"""One-line notes a depth or segmentation run prints before it starts: precision, units, sizes."""

from __future__ import annotations

SQUARE_NOTE = ("Swin-V2 runs at its square network size, as the original does: each photo is squashed to it "
               "and the depth map resized back to the photo's shape")


def at_trained_square(c, prep) -> bool:
    """A Swin-V2 model squashing photos to its trained square: the only way the original runs it."""
    return c.family == "swinv2" and tuple(prep.size) == tuple(c.backbone_config.image_size) and not prep.keep_aspect


def warn(reporter, model, formats: list[str], half_on_cpu: bool, prep) -> None:
    """Notes for choices that work but surprise: sizes a model was not trained at, slow float16 on a
    CPU, point clouds of a relative model."""
    c = model.config
    if c.family == "swinv2" and not at_trained_square(c, prep):
        side = "x".join(map(str, c.backbone_config.image_size))
        reporter.note(f"this Swin-V2 model was trained at {side}, the only size the original runs it at; "
                      "other sizes run as transformers runs them (windows padded), with no original to match")
    if half_on_cpu:
        reporter.note("float16 on the CPU runs about 20x slower than float32 (no fast half-precision kernels there): "
                      "--dtype float32 (the CPU default) or bfloat16 is faster")
    if "ply" in formats and not model.config.is_metric:
        reporter.note("this is a relative model: its point clouds are z = 1/(inverse relative depth), "
                      "up to an unknown scale and shift, not metres")
