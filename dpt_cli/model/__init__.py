"""DPT model core: pure tensor-in/tensor-out PyTorch modules."""

from .dpt import DPT, check_input_size

__all__ = ["DPT", "check_input_size"]
