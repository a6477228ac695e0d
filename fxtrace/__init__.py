"""fxtrace: torch.jit.trace, reimplemented on torch.fx."""
