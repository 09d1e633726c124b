"""The clip options' checks that need no model: torchrun, --sequence, and PyAV missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpt_cli.errors import UsageError
from dpt_cli.cli.videos import check_inputs
from dpt_cli.pipeline.inputs import InputItem, InputProblem

PHOTO = InputItem(Path("/p/a.png"), Path("a.png"))
FRAME = InputItem(Path("/p/c.mp4"), Path("c.mp4"), frame=0, clip=object())


@pytest.mark.parametrize(("items", "options", "distributed", "message"), [
    ([FRAME], {}, True, "video clips and --sequence under torchrun"),
    ([PHOTO], {"sequence": True}, True, "video clips and --sequence under torchrun"),
    ([FRAME], {"sequence": True}, False, "the inputs hold no photos"),
    ([PHOTO], {"align": True}, False, "--align works along the frames"),
])
def test_refused(items, options, distributed, message):
    with pytest.raises(UsageError, match=message):
        check_inputs(items, [], options, distributed)


def test_accepted():
    check_inputs([PHOTO, FRAME], [], {"sequence": True, "smooth": 3, "align": True}, False)
    check_inputs([PHOTO], [], {}, True)


def test_only_clips_without_pyav_is_a_usage_error_but_a_mixed_run_goes_on():
    problem = InputProblem("/p/c.mp4", "a video clip: reading it needs PyAV, an optional extra: pip install 'dpt-cli[video]'")
    with pytest.raises(UsageError, match="needs PyAV"):
        check_inputs([], [problem], {}, False)
    check_inputs([PHOTO], [problem], {}, False)
