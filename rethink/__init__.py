"""rethink: a runnable companion to "Rethinking the Value of Network Pruning" (Liu et al., ICLR 2019) and
"Rethinking the Pruning Criteria for Convolutional Neural Network" (Huang et al., NeurIPS 2021)."""
from .metrics import count_flops, count_params, sparsity
from .models import get_model, list_models
from .prune import get_method, list_methods

__all__ = ["get_model", "list_models", "get_method", "list_methods", "count_params", "count_flops", "sparsity"]
__version__ = "0.1.0"
