"""Small host values onto a device without making the host wait for the GPU."""
import torch

__all__ = ["host_to_device"]


def host_to_device(values, device, dtype=None):
    """``values`` (a list, a NumPy array or a CPU tensor) as a tensor on ``device``.

    To a GPU the copy goes through pinned (page-locked) memory and does not block: a copy
    from pageable memory makes the host wait until the stream has run everything queued
    before it, a host sync in the middle of a step. The pinned buffer stays alive until the
    copy has run (torch's caching host allocator records the copy's stream), and work queued
    later on the current stream sees the values. Elsewhere it is a plain ``.to(device)``.

    Args:
        values: host data; a tensor must be on the CPU.
        device: a ``torch.device`` or a string such as ``"cuda:0"``.
        dtype: the result's dtype (default: ``torch.tensor``'s choice for ``values``, a
            tensor's own dtype).

    Returns:
        A tensor on ``device`` holding ``values``, a new tensor (never a view of ``values``).
    """
    device = torch.device(device)
    if isinstance(values, torch.Tensor):
        if values.device.type != "cpu":
            raise ValueError(f"values must be on the CPU, got a tensor on {values.device}")
        t = values.to(dtype) if dtype is not None else values
        t = t.clone() if t is values else t
    else:
        t = torch.tensor(values, dtype=dtype)
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)
