"""funcbp: backpropagation from *Deep Learning from Scratch* in JAX.

The layers (chapter 5's, and the later chapters' convolution, pooling, batch
normalization, dropout and weight decay) are pure functions whose backward
rules are hand-written and registered with ``jax.custom_vjp``;
:mod:`funcbp.reference` holds their plain-jnp twins, and
:func:`compare_gradients` checks one against the other and against
:func:`numerical_gradient`; :class:`Check` rows make a table of such checks, and
:func:`funcbp.testing.assert_rule` is the assertion for tests.

Forward-mode autodiff (``jax.jvp``, ``jax.jacfwd``) cannot pass through
``custom_vjp``; reverse mode, ``grad`` of ``grad`` and ``jax.hessian`` work.
"""

from funcbp import reference
from funcbp.checks import Check
from funcbp.conv import convolution, pooling, transpose
from funcbp.gradcheck import compare_gradients, numerical_gradient
from funcbp.layers import (
    add,
    affine,
    cross_entropy_error,
    mul,
    relu,
    sigmoid,
    softmax,
    softmax_with_loss,
)
from funcbp.net import Network
from funcbp.norm import batch_norm, dropout, weight_decay
from funcbp.testing import assert_rule
from funcbp.zoo import (
    deep_convnet,
    network,
    simple_convnet,
    two_layer,
    two_layer_net,
)

__version__ = "0.1.0"

__all__ = [
    "Check",
    "Network",
    "add",
    "affine",
    "assert_rule",
    "batch_norm",
    "compare_gradients",
    "convolution",
    "cross_entropy_error",
    "deep_convnet",
    "dropout",
    "mul",
    "network",
    "numerical_gradient",
    "pooling",
    "reference",
    "relu",
    "sigmoid",
    "simple_convnet",
    "softmax",
    "softmax_with_loss",
    "transpose",
    "two_layer",
    "two_layer_net",
    "weight_decay",
]
