"""funcbp: backpropagation from *Deep Learning from Scratch* in JAX.

The layers (chapter 5's, and the later chapters' convolution, pooling, batch
normalization, dropout and weight decay) are pure functions whose backward
rules are hand-written and registered with ``jax.custom_vjp``;
:mod:`funcbp.reference` holds their plain-jnp twins, and
:func:`compare_gradients` checks one against the other and against
:func:`numerical_gradient`.

Forward-mode autodiff (``jax.jvp``, ``jax.jacfwd``) cannot pass through
``custom_vjp``; reverse mode, ``grad`` of ``grad`` and ``jax.hessian`` work.

The names below are imported when first used, so that ``import funcbp`` (and
the ``funcbp`` command, which handles Ctrl-C from its first line) does not
wait for JAX.
"""

import importlib

__version__ = "0.1.0"

# name -> the module that defines it
_PUBLIC = {
    "Check": "funcbp.checks",
    "Network": "funcbp.net",
    "add": "funcbp.layers",
    "affine": "funcbp.layers",
    "assert_rule": "funcbp.testing",
    "batch_norm": "funcbp.norm",
    "compare_gradients": "funcbp.gradcheck",
    "convolution": "funcbp.conv",
    "cross_entropy_error": "funcbp.layers",
    "deep_convnet": "funcbp.zoo",
    "dropout": "funcbp.norm",
    "mul": "funcbp.layers",
    "network": "funcbp.zoo",
    "numerical_gradient": "funcbp.gradcheck",
    "pooling": "funcbp.conv",
    "relu": "funcbp.layers",
    "sigmoid": "funcbp.layers",
    "simple_convnet": "funcbp.zoo",
    "softmax": "funcbp.layers",
    "softmax_with_loss": "funcbp.layers",
    "transpose": "funcbp.conv",
    "two_layer": "funcbp.zoo",
    "two_layer_net": "funcbp.zoo",
    "weight_decay": "funcbp.norm",
}

__all__ = sorted([*_PUBLIC, "reference"])


def __getattr__(name: str):
    if name == "reference":
        return importlib.import_module("funcbp.reference")
    if name not in _PUBLIC:
        raise AttributeError(f"module 'funcbp' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__():
    return __all__
