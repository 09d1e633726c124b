"""What only makes sense for video clips and sequences, refused where it would do nothing."""

from __future__ import annotations

from ..errors import UsageError
from ..text import shown


def check_inputs(items: list, problems: list, options: dict, distributed: bool) -> None:
    """--sequence, --smooth and --align against what the inputs turned out to be."""
    clips = any(item.clip is not None for item in items)
    photos = any(item.clip is None for item in items)
    needs_pyav = [p for p in problems if "needs PyAV" in p.error]
    if needs_pyav and not items:
        raise UsageError(f"{shown(needs_pyav[0].path)}: {needs_pyav[0].error}")
    if options.get("sequence") and not photos:
        raise UsageError("--sequence makes the photos one sequence, but the inputs hold no photos (a video clip is a sequence already): drop it")
    sequences = clips or options.get("sequence")
    for flag, given in (("--smooth", options.get("smooth")), ("--align", options.get("align"))):
        if given and not sequences:
            raise UsageError(f"{flag} works along the frames of a video clip, or of photos given with --sequence: add --sequence, or drop {flag}")
    if distributed and (clips or options.get("sequence")):
        raise UsageError("video clips and --sequence under torchrun: one process must see every frame of a sequence; run it without torchrun")


def check_model(config, spec: str, options: dict) -> None:
    """--align fits relative depth; a metric model's metres are not to be rescaled."""
    if options.get("align") and config.is_metric:
        raise UsageError(f"--align fits the scale and shift of relative depth, but {shown(spec)} gives metres: drop --align")


def check_space(items: list, planned: list, options: dict, folder) -> None:
    """The float maps a clip keeps until its range is known must fit on the output's disk."""
    import shutil

    from ..pipeline.deferral import Policy, space_needed

    need = space_needed(items, planned, Policy.of(options))
    if not need:
        return
    try:
        free = shutil.disk_usage(folder if folder.exists() else folder.parent if folder.parent.exists() else ".").free
    except OSError:
        return
    if need > free:
        raise UsageError(f"the clips' depth maps are kept as floats until each clip's range is known: about {need / 1e9:.1f} GB, "
                         f"but {shown(folder)} has {free / 1e9:.1f} GB free; give --range per-frame or --range MIN:MAX (nothing kept), or free space")
