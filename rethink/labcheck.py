"""Checks of the course labs: a student's function against the reference (this package's own function) on random
inputs, failing with an AssertionError that says WHAT differs (the shape, which filters, by how much, on which
input) rather than just "wrong".

The otter test cells of the labs (``notebooks/labs/``) are one call each, e.g.::

    labcheck.check_function(l1_scores, criteria.l1, labcheck.random_filters(), compare=labcheck.check_tensor)

so the message a student reads comes from here and is tested once (tests/test_labcheck.py).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Optional, Sequence

import torch
import torch.nn as nn

MAX_LISTED = 8  # indices named in a message; more are counted, not listed


def _listed(idx: Sequence[int]) -> str:
    idx = list(idx)
    head = ", ".join(str(i) for i in idx[:MAX_LISTED])
    return f"[{head}{', ...' if len(idx) > MAX_LISTED else ''}]"


def describe(x: Any) -> str:
    """A short description of a value for messages: a tensor's shape and dtype, a list's length, else repr."""
    if isinstance(x, torch.Tensor):
        return f"tensor of shape {tuple(x.shape)} ({str(x.dtype).replace('torch.', '')})"
    if isinstance(x, nn.Module):  # a layer as PyTorch prints it; a network by its class
        text = repr(x)
        return text if not list(x.children()) and len(text) <= 100 else type(x).__name__
    if hasattr(x, "arch") and hasattr(x, "profile") and hasattr(x, "train"):  # a RunConfig
        return f"<{x.profile} config of {x.arch}>"
    if isinstance(x, (list, tuple)) and len(x) > 6:
        return f"{type(x).__name__} of length {len(x)}"
    if isinstance(x, dict):  # keys shown, values summarised
        return "{" + ", ".join(f"{k!r}: {describe(v) if not isinstance(v, torch.Tensor) else 'tensor ' + str(tuple(v.shape))}"
                               for k, v in list(x.items())[:4]) + (", ...}" if len(x) > 4 else "}")
    text = repr(x)
    return text if len(text) <= 80 else text[:77] + "..."


def not_written(got: Any, what: str) -> None:
    """Fail when a stub's placeholder came back: the function is still the student version's ``...``."""
    if got is None or got is Ellipsis:
        raise AssertionError(f"{what} returned {got!r}: the function is not written yet (replace the `...` with "
                             f"your code and return the result)")


def check_tensor(got: Any, want: torch.Tensor, what: str = "result", atol: float = 1e-5, rtol: float = 1e-4,
                 entry: str = "entry") -> None:
    """``got`` equals the tensor ``want`` (shape, then values within atol + rtol * |want|).  ``entry`` names one
    element in the message ("filter" for per-filter scores)."""
    not_written(got, what)
    if not isinstance(got, torch.Tensor):
        raise AssertionError(f"{what} must be a torch.Tensor; got {describe(got)}")
    want = want.detach()
    if tuple(got.shape) != tuple(want.shape):
        hint = f" (one value per {entry})" if want.dim() == 1 else ""
        raise AssertionError(f"{what} has shape {tuple(got.shape)}, expected {tuple(want.shape)}{hint}")
    if want.dtype == torch.bool or got.dtype == torch.bool:
        if got.dtype != want.dtype:
            raise AssertionError(f"{what} has dtype {got.dtype}, expected {want.dtype}")
        diff = (got.detach().cpu() != want.cpu()).flatten()
        if diff.any():
            bad = diff.nonzero().flatten().tolist()
            raise AssertionError(f"{what}: {len(bad)} of {diff.numel()} {entry}s differ (flat positions "
                                 f"{_listed(bad)})")
        return
    g, w = got.detach().double().cpu().flatten(), want.double().cpu().flatten()
    if torch.isnan(g).any() and not torch.isnan(w).any():
        raise AssertionError(f"{what} holds NaN at {entry}s {_listed(torch.isnan(g).nonzero().flatten().tolist())}")
    err = (g - w).abs()
    bad = (err > atol + rtol * w.abs()).nonzero().flatten().tolist()
    if bad:
        worst = int(err.argmax())
        where = worst if want.dim() == 1 else tuple(int(i) for i in torch.unravel_index(torch.tensor(worst),
                                                                                         want.shape))
        raise AssertionError(
            f"{what}: {len(bad)} of {w.numel()} {entry}s differ ({entry}s {_listed(bad) if want.dim() == 1 else ''}"
            f"{'' if want.dim() == 1 else 'at flat positions ' + _listed(bad)}); the largest difference is at "
            f"{entry} {where}: got {g[worst]:.6g}, expected {w[worst]:.6g}")


def check_indices(got: Any, want: Any, what: str = "kept filters", ordered: bool = False,
                  entry: str = "filter") -> None:
    """``got`` holds the same indices as ``want``: as a set, and in the same order when ``ordered``.  Names the
    indices that should not be there and the ones that are missing."""
    not_written(got, what)
    try:
        g = [int(i) for i in (got.tolist() if isinstance(got, torch.Tensor) else got)]
    except (TypeError, ValueError):
        raise AssertionError(f"{what} must be a list or tensor of {entry} indices; got {describe(got)}") from None
    w = [int(i) for i in (want.tolist() if isinstance(want, torch.Tensor) else want)]
    if len(set(g)) != len(g):
        dup = sorted({i for i in g if g.count(i) > 1})
        raise AssertionError(f"{what} names {entry}s {_listed(dup)} more than once")
    if len(g) != len(w):
        raise AssertionError(f"{what} has {len(g)} {entry}s, expected {len(w)}")
    extra, missing = sorted(set(g) - set(w)), sorted(set(w) - set(g))
    if extra or missing:
        raise AssertionError(f"{what}: {entry}s {_listed(extra)} should not be there and {entry}s "
                             f"{_listed(missing)} are missing ({len(extra)} of {len(w)} differ)")
    if ordered and g != w:
        first = next(i for i, (a, b) in enumerate(zip(g, w)) if a != b)
        raise AssertionError(f"{what} has the right {entry}s in the wrong order: position {first} holds {g[first]}, "
                             f"expected {w[first]} (expected order {_listed(w)})")


def check_number(got: Any, want: float, what: str = "result", rel: float = 1e-6, integer: bool = False) -> None:
    """``got`` equals the number ``want`` (exactly when ``integer``, else within ``rel`` relative)."""
    not_written(got, what)
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if integer:
        if not isinstance(got, int) or isinstance(got, bool):
            raise AssertionError(f"{what} must be an int; got {describe(got)} ({type(got).__name__})")
        if got != want:
            ratio = f", {got / want:.4g} times it" if want else ""
            raise AssertionError(f"{what} is {got}, expected {want} (off by {got - want:+d}{ratio})")
        return
    if not isinstance(got, (int, float)):
        raise AssertionError(f"{what} must be a number; got {describe(got)}")
    if not math.isclose(got, want, rel_tol=rel, abs_tol=1e-12):
        ratio = f", {got / want:.4g} times it" if want else ""
        raise AssertionError(f"{what} is {got:.6g}, expected {want:.6g} (off by {got - want:+.3g}{ratio})")


def check_function(fn: Callable, reference: Callable, inputs: Iterable, compare: Callable = check_tensor,
                   what: Optional[str] = None, **compare_kw) -> None:
    """Call ``fn`` and ``reference`` on every input (a tuple of positional arguments) and ``compare`` the results;
    a failure names the input.  An exception inside ``fn`` becomes the failure, with its type and message."""
    name = what or getattr(fn, "__name__", "your function")
    for args in inputs:
        args = args if isinstance(args, tuple) else (args,)
        shown = ", ".join(describe(a) for a in args)
        want = reference(*args)
        try:
            got = fn(*_copies(args))
        except Exception as e:  # noqa: BLE001: any error of the student's code is the message
            raise AssertionError(f"{name}({shown}) raised {type(e).__name__}: {e}") from None
        compare(got, want, what=f"{name}({shown})", **compare_kw)


def _copies(args: tuple) -> tuple:
    """Tensors and modules cloned, so that a function editing its input in place cannot change the reference's."""
    import copy
    return tuple(a.clone() if isinstance(a, torch.Tensor) else copy.deepcopy(a) if isinstance(a, nn.Module) else a
                 for a in args)


def random_filters(seed: int = 0, shapes: Sequence[tuple] = ((16, 8, 3, 3), (8, 1, 3, 3), (32, 4, 1, 1),
                                                             (1, 3, 3, 3))) -> list[torch.Tensor]:
    """Conv weights (out, in, kh, kw) of several shapes, filters of different scales (so that criteria rank them
    apart), one layer of a single filter: the inputs the checks try."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for shape in shapes:
        scale = torch.rand(shape[0], 1, 1, 1, generator=g) + 0.5
        out.append(torch.randn(*shape, generator=g) * scale)
    return out


def check_state(got: nn.Module, want: nn.Module, what: str = "your model") -> None:
    """The same parameter and buffer names, shapes and values as the reference model: the first mismatch named."""
    if not isinstance(got, nn.Module):
        not_written(got, what)
        raise AssertionError(f"{what} must be a torch.nn.Module; got {describe(got)}")
    gs, ws = got.state_dict(), want.state_dict()
    missing, extra = sorted(set(ws) - set(gs)), sorted(set(gs) - set(ws))
    if missing or extra:
        raise AssertionError(f"{what} has tensors {_listed(extra)} that the reference lacks and lacks {_listed(missing)}")
    for key, w in ws.items():
        g = gs[key]
        if tuple(g.shape) != tuple(w.shape):
            raise AssertionError(f"{what}: {key} has shape {tuple(g.shape)}, the reference's has {tuple(w.shape)}")
        if g.dtype.is_floating_point and not torch.allclose(g.double(), w.double(), atol=1e-6, rtol=1e-5):
            rows = (g.double() - w.double()).abs().flatten(1).amax(1) if g.dim() > 1 else (g.double() - w.double()).abs()
            bad = (rows > 1e-6).nonzero().flatten().tolist()
            raise AssertionError(f"{what}: {key} differs in rows (output channels) {_listed(bad)}, by up to "
                                 f"{rows.max():.4g} (wrong filters kept or copied?)")


@torch.no_grad()
def check_same_outputs(got: nn.Module, want: nn.Module, x: torch.Tensor, what: str = "your model",
                       atol: float = 1e-5) -> None:
    """Both models in eval mode give the same outputs on ``x``; the state is compared first, so a message names
    the tensor that differs rather than only the outputs."""
    check_state(got, want, what)
    got.eval(), want.eval()
    g, w = got(x), want(x)
    check_tensor(g, w, what=f"{what}'s outputs on a batch of {len(x)}", atol=atol, rtol=1e-4, entry="logit")


@torch.no_grad()
def with_random_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """``model`` with random BatchNorm scales, shifts and running statistics (in place), so that a check notices a
    surgery that forgets to cut them: at initialisation they are 1, 0, 0, 1 in every channel, the same after any cut."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.weight.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return model


def check_conv_surgery(fn: Callable, model: nn.Module, layer_id: int, keep) -> None:
    """``fn(conv, bn, next_layer, keep)`` returns the three modules of conv layer ``layer_id`` of ``model`` cut to the
    filters ``keep``, as :func:`rethink.prune.surgery.prune_filters` cuts them."""
    import copy

    from .prune.surgery import prune_filters
    keep = torch.as_tensor(keep, dtype=torch.long)
    layer = next(lay for lay in model.conv_layers() if lay.id == layer_id)
    names = (layer.conv, layer.bn, layer.consumers[0])
    reference = prune_filters(model, {layer_id: keep})
    args = [copy.deepcopy(model.get_submodule(n)) for n in names]
    what = f"{getattr(fn, '__name__', 'your function')}(conv layer {layer_id}, keep {len(keep)} of " \
           f"{args[0].out_channels} filters)"
    try:
        got = fn(*args, keep.clone())
    except Exception as e:  # noqa: BLE001
        raise AssertionError(f"{what} raised {type(e).__name__}: {e}") from None
    not_written(got, what)
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        raise AssertionError(f"{what} must return three modules (conv, bn, next_layer); got {describe(got)}")
    for role, name, g in zip(("conv", "BatchNorm", "next layer"), names, got):
        check_state(g, reference.get_submodule(name), what=f"{what}: the {role}")


def check_fields(got: Any, want: Any, what: str = "result") -> None:
    """``got`` is a dataclass (e.g. a :class:`rethink.train.Schedule`) of ``want``'s type with the same field values;
    a failure names every field that differs."""
    import dataclasses
    not_written(got, what)
    if type(got) is not type(want):
        raise AssertionError(f"{what} must be a {type(want).__name__}; got {describe(got)}")
    diffs = [f"{f.name} is {getattr(got, f.name)!r}, expected {getattr(want, f.name)!r}"
             for f in dataclasses.fields(want) if getattr(got, f.name) != getattr(want, f.name)]
    if diffs:
        raise AssertionError(f"{what}: " + "; ".join(diffs))


def check_mapping(got: Any, want: dict, compare: Callable = check_tensor, what: str = "result",
                  key: str = "layer", **compare_kw) -> None:
    """``got`` is a dict with ``want``'s keys whose values pass ``compare`` (e.g. kept indices per layer with
    :func:`check_indices`, masks per conv with :func:`check_tensor`, widths with :func:`check_number`)."""
    not_written(got, what)
    if not isinstance(got, dict):
        raise AssertionError(f"{what} must be a dict {{{key}: ...}}; got {describe(got)}")
    missing, extra = [k for k in want if k not in got], [k for k in got if k not in want]
    if missing or extra:
        raise AssertionError(f"{what} has {key}s {_listed(extra)} that it should not have and lacks {key}s "
                             f"{_listed(missing)} (expected the {key}s {_listed(list(want))})")
    for k, w in want.items():
        compare(got[k], w, what=f"{what}, {key} {k!r}", **compare_kw)


def check_numbers(got: Any, want: Sequence[float], what: str = "result", rel: float = 1e-6) -> None:
    """``got`` is a sequence of numbers equal to ``want`` (within ``rel``), element by element."""
    not_written(got, what)
    try:
        g = [float(v) for v in got]
    except (TypeError, ValueError):
        raise AssertionError(f"{what} must be a list of numbers; got {describe(got)}") from None
    if len(g) != len(want):
        raise AssertionError(f"{what} has {len(g)} numbers, expected {len(want)}: {[round(w, 6) for w in want]}")
    for i, (a, b) in enumerate(zip(g, want)):
        check_number(a, b, what=f"{what}[{i}]", rel=rel)


def check_grad_hook(hook: Any, reference: Callable, model: nn.Module, seed: int = 0, what: str = "your hook") -> None:
    """An ``after_backward`` hook (``hook(model)``, changing gradients in place) does to the gradients of a
    ``model`` what ``reference`` does: both get a copy of the model with the same gradients of a random batch; every
    parameter's gradient is compared after.  The message names the parameter and the channels that differ."""
    import copy
    not_written(hook, what)
    if not callable(hook):
        raise AssertionError(f"{what} must be a function hook(model); got {describe(hook)}")
    torch.manual_seed(seed)
    model = copy.deepcopy(model).train()
    with_random_bn(model, seed)
    x = torch.randn(4, getattr(model, "in_channels", 3), 32, 32, generator=torch.Generator().manual_seed(seed))
    a, b = copy.deepcopy(model), copy.deepcopy(model)  # before backward: a deep copy does not copy .grad
    for m in (a, b):
        m(x).square().mean().backward()
    try:
        hook(a)
    except Exception as e:  # noqa: BLE001
        raise AssertionError(f"{what}(model) raised {type(e).__name__}: {e}") from None
    reference(b)
    grads_b = dict(b.named_parameters())
    for name, p in a.named_parameters():
        want = grads_b[name].grad
        if (p.grad is None) != (want is None):
            raise AssertionError(f"{what}: the gradient of {name} is {'gone' if p.grad is None else 'there'}, "
                                 f"expected {'none' if want is None else 'one'}")
        if want is not None:
            entry = "channel" if p.dim() == 1 else "entry"
            check_tensor(p.grad, want, what=f"{what}: the gradient of {name}", atol=1e-7, rtol=1e-5, entry=entry)


def check_widths(got: Any, want: dict, what: str = "result") -> None:
    """``got`` is ``{layer: filters kept}`` equal to ``want``; a failure lists every layer that keeps another
    number of filters."""
    check_mapping(got, want, compare=lambda g, w, what: None, what=what)  # the keys
    bad = [f"layer {k} keeps {got[k]!r}, expected {w}" for k, w in want.items() if got[k] != w]
    if bad:
        raise AssertionError(f"{what}: " + "; ".join(bad) + f" (total {sum(int(v) for v in got.values())}, "
                             f"expected {sum(want.values())})")


def check_keep(got: Any, want: dict, what: str = "result") -> None:
    """``got`` is ``{layer: kept indices}`` with the same indices per layer as ``want`` (sorted ascending)."""
    check_mapping(got, want, compare=check_indices, what=what, ordered=True, entry="channel")
