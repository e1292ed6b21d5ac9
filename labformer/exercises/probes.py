"""What the checker asks of a piece: run it on one case and report what it computed.

A probe is ``probe(piece, args) -> {check: value}``: it builds its inputs from ``args`` (explicit small
tensors or seeds), calls ``piece`` (a student's, the reference's or a catalogued mistake's) and returns,
in the order the checks are judged, plain values: tensors (float64, CPU), booleans, ints, lists of ints or
strings. The same probe runs on every candidate — in the checker's process for the reference and the
mistakes, in a child process for a student's code — so that they are compared on the same footing.

Module pieces are loaded with the reference module's weights, drawn larger than the lab's N(0, 0.02) and
with LayerNorm parameters away from 1 and 0: the lab's own initialisation hides many mistakes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

Outputs = dict[str, Any]


class NotDone(Exception):  # noqa: N818 (a verdict, not a failure of the checker)
    """The piece is still the exercise's blank: it raises NotImplementedError, returns None or ``...``."""


def _tensor(value: Any) -> Tensor:
    return torch.as_tensor(value, dtype=torch.float32)


def _randn(seed: int, *shape: int, scale: float = 1.0) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


def _result(value: Any) -> Tensor:
    """A piece's returned tensor as float64 on the CPU; a blank answer is NotDone."""
    if value is None or value is Ellipsis:
        raise NotDone
    if not isinstance(value, Tensor):
        raise TypeError(f"expected a tensor, got {type(value).__name__}")
    return value.detach().to("cpu", torch.float64)


def _inputs(args: dict[str, Any], names: tuple[str, ...]) -> list[Tensor]:
    """Explicit inputs (``args[name]`` a nested list) or seeded ones (``args["seed"]``, ``args["shapes"]``)."""
    if all(name in args for name in names):
        tensors = [_tensor(args[name]) for name in names]
    elif "manual_seed" in args:  # the lab's own draws: torch.manual_seed(s), then torch.randn for each
        torch.manual_seed(args["manual_seed"])
        tensors = [torch.randn(*shape) for shape in args["shapes"]]
    else:
        tensors = [_randn(args["seed"] + i, *shape, scale=args.get("scale", 1.0)) for i, shape in
                   enumerate(args["shapes"])]  # fmt: skip
    if args.get("normalize"):
        tensors = [torch.nn.functional.normalize(t, dim=-1) for t in tensors]
    if args.get("batch"):
        tensors = [t.unsqueeze(0) for t in tensors]
    if args.get("float64"):
        tensors = [t.double() for t in tensors]
    return tensors


def _mask(args: dict[str, Any]) -> Tensor | None:
    """The case's mask: None, or a lower-triangular (block, block) matrix (True/1 = may attend)."""
    spec = args.get("mask")
    if spec is None:
        return None
    size = spec["size"]
    if "rows" in spec:
        mask = torch.tensor(spec["rows"], dtype=torch.bool)
    else:
        mask = torch.tril(torch.ones(size, size, dtype=torch.bool))
    return mask.float() if spec.get("dtype") == "float" else mask


def _close(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=1e-4, atol=1e-5))


def _forget(fn: Callable[..., Any], *tensors: Tensor) -> Any:
    """Calls ``fn`` on copies, so that a piece that changes its inputs in place changes nothing here."""
    return fn(*(t.clone() for t in tensors))


# --------------------------------------------------------------------------- functions


def single_query(fn: Callable[..., Any], args: dict[str, Any]) -> Outputs:
    """simple_attention(q, k, v) with q (1, d), k and v (n, d)."""
    q, k, v = _inputs(args, ("q", "k", "v"))
    out = _result(_forget(fn, q, k, v))
    return {"shape": list(out.shape), "out": out}


def alpha(fn: Callable[..., Any], args: dict[str, Any]) -> Outputs:
    """attention_alpha(q, k) -> (1, n) weights: non-negative, summing to 1."""
    q, k = _inputs(args, ("q", "k"))
    weights = _result(_forget(fn, q, k))
    return {
        "shape": list(weights.shape),
        "nonnegative": bool((weights >= 0).all()),
        "rows_sum_to_one": bool(torch.allclose(weights.sum(-1), torch.ones(()).double(), atol=1e-5)),
        "out": weights,
    }


def batched(fn: Callable[..., Any], args: dict[str, Any]) -> Outputs:
    """scaled_dot_product_attention(q, k, v[, mask]) on (b, n, d), with its permutation properties."""
    q, k, v = _inputs(args, ("q", "k", "v"))
    mask = _mask(args)
    call = (lambda *t: fn(*t, mask.clone())) if mask is not None else fn
    out = _result(_forget(call, q, k, v))
    outputs: Outputs = {"shape": list(out.shape), "out": out}
    if mask is None and q.size(1) > 1:
        order = torch.arange(q.size(1)).flip(0)
        outputs["permuting_queries_permutes_output"] = _close(_result(_forget(fn, q[:, order], k, v)), out[:, order])
        outputs["permuting_keys_values_changes_nothing"] = _close(
            _result(_forget(fn, q, k[:, order], v[:, order])), out
        )
    return outputs


def masked_weights(fn: Callable[..., Any], args: dict[str, Any]) -> Outputs:
    """masked_attention_weights(q, k, mask) -> (b, n, n): rows are distributions, masked entries exactly 0."""
    q, k = _inputs(args, ("q", "k"))
    mask = _mask(args)
    weights = _result(fn(q.clone(), k.clone(), mask.clone()))
    allowed = mask.bool()[: weights.size(-2), : weights.size(-1)] if weights.dim() == 3 else mask.bool()
    return {
        "shape": list(weights.shape),
        "nonnegative": bool((weights >= 0).all()),
        "rows_sum_to_one": bool(torch.allclose(weights.sum(-1), torch.ones(()).double(), atol=1e-5)),
        "masked_are_zero": bool((weights[..., ~allowed] == 0).all()) if weights.shape[-2:] == allowed.shape else False,
        "out": weights,
    }


def positions(fn: Callable[..., Any], args: dict[str, Any]) -> Outputs:
    """position_encoding(n_keys, dimension) -> (1, n, d)."""
    pe = _result(fn(args["n_keys"], args["dimension"]))
    return {"shape": list(pe.shape), "out": pe}


def pair(fn: Callable[..., Any], args: dict[str, Any]) -> Outputs:
    """A piece that returns two tensors: add_positions(q, k), dot_products(q, k), softmaxes(x)."""
    names = tuple(args["inputs"])
    inputs = _inputs(args, names)
    answer = _forget(fn, *inputs)
    if answer is None or answer is Ellipsis:
        raise NotDone
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        raise TypeError(f"expected two tensors, got {type(answer).__name__}")
    first, second = _result(answer[0]), _result(answer[1])
    outputs: Outputs = {"shape": [list(first.shape), list(second.shape)], "first": first, "second": second}
    if args.get("variance"):
        outputs["variances"] = torch.stack([first.var(), second.var()])
    return outputs


# --------------------------------------------------------------------------- modules


def randomise(module: nn.Module, seed: int) -> nn.Module:
    """Weights that show mistakes: N(0, 1/fan_in) matrices, N(0, 0.5) biases and embeddings, LayerNorm
    scales 1 ± 0.5 and shifts N(0, 0.5) (the lab's N(0, 0.02), zero biases and LayerNorms at 1 and 0 hide
    a wrong activation, a misplaced position encoding or an extra bias)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if parameter.dim() >= 2 and not isinstance(_owner(module, name), nn.Embedding):
                parameter.copy_(noise / math.sqrt(parameter.shape[-1]))
            elif name.endswith("weight") and isinstance(_owner(module, name), nn.LayerNorm):
                parameter.copy_(1 + 0.5 * noise)
            else:
                parameter.copy_(0.5 * noise)
    return module


def _owner(module: nn.Module, name: str) -> nn.Module:
    return module.get_submodule(name.rpartition(".")[0])


def parameters(module: nn.Module) -> dict[str, Tensor]:
    """The module's parameters by name (a parameter shared by two modules appears once; buffers such as
    a mask are the module's own and are never overwritten)."""
    return {name: p.detach() for name, p in module.named_parameters()}


def load_weights(candidate: nn.Module, weights: dict[str, Tensor]) -> str:
    """Copies ``weights`` (a reference's parameters) into ``candidate``: by name where the names are the
    lab's, else by order where the shapes agree. Returns how: "names", "order" or "" (not loaded)."""
    own = parameters(candidate)
    with torch.no_grad():
        if set(own) == set(weights) and all(own[n].shape == weights[n].shape for n in own):
            for name, tensor in own.items():
                tensor.copy_(weights[name].to(tensor.dtype))
            return "names"
        if [t.shape for t in own.values()] == [t.shape for t in weights.values()]:
            for tensor, source in zip(own.values(), weights.values()):
                tensor.copy_(source.to(tensor.dtype))
            return "order"
    return ""


def _build(cls: Callable[..., nn.Module], init: list[Any], seed: int) -> nn.Module:
    torch.manual_seed(seed)
    module = cls(*init)
    if not isinstance(module, nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(module).__name__}")
    return module


def module_probe(cls: Callable[..., nn.Module], args: dict[str, Any], reference: type[nn.Module]) -> Outputs:
    """Builds ``cls(*args["init"])``, loads the reference's (randomised) weights, and reports: its
    parameter shapes, output shape and values in eval(), dropout off in eval() and on in train(), the
    parameters no gradient reaches, the parameter count, and the parameter names."""
    init = args["init"]
    module = _build(cls, init, args["seed"])
    outputs: Outputs = {"parameter_count": sum(p.numel() for p in module.parameters())}
    if args.get("count_only"):
        return outputs
    expected = parameters(randomise(reference(*init), args["seed"]))
    outputs["parameter_shapes"] = [list(t.shape) for t in parameters(module).values()]
    loaded = load_weights(module, expected)
    if not loaded:
        return outputs
    inputs = _module_inputs(args)
    module.eval()
    out = _result(_call(module, inputs, args))
    outputs["shape"] = list(out.shape)
    outputs["out"] = out
    outputs["eval_is_repeatable"] = _close(_result(_call(module, inputs, args)), out)
    if args.get("dropout_probe"):
        train = _build(cls, args["dropout_probe"], args["seed"])
        load_weights(train, parameters(randomise(reference(*args["dropout_probe"]), args["seed"])))
        train.train()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            trained = _result(_call(train, inputs, args))
        outputs["dropout_in_train"] = not _close(trained, out)
        # dropout on the output itself zeroes about half of it; dropout on attention weights zeroes none
        outputs["dropout_on_output"] = bool((trained == 0).double().mean() > 0.25)
    module.zero_grad(set_to_none=True)
    with torch.enable_grad():
        value = _call(module, inputs, args)
        if isinstance(value, Tensor) and value.requires_grad:
            (value.double() ** 2).sum().backward()
    outputs["parameters_without_gradient"] = sorted(
        name for name, p in module.named_parameters() if p.grad is None or not p.grad.any()
    )
    outputs["parameter_names"] = list(parameters(module))
    if args.get("labformer"):
        outputs["with_labformer_weights"] = _with_labformer_weights(module, args)
    return outputs


def _module_inputs(args: dict[str, Any]) -> list[Tensor]:
    if args.get("tokens"):
        vocab, (batch, length) = args["tokens"]
        generator = torch.Generator().manual_seed(args["seed"] + 7)
        return [torch.randint(vocab, (batch, length), generator=generator)]
    count = 1 if args.get("single_input") else (1 if args.get("self") else 3)
    shape = args["x"]
    tensors = [_randn(args["seed"] + 10 + i, *shape) for i in range(count)]
    return tensors * 3 if args.get("self") else tensors


def _call(module: nn.Module, inputs: list[Tensor], args: dict[str, Any]) -> Any:
    fresh = [t.clone() for t in inputs]
    if args.get("tokens") or args.get("single_input"):
        return module(*fresh)
    mask = _mask(args)
    if args.get("encoder"):
        return module(fresh[0], mask) if mask is not None else module(fresh[0])
    return module(*fresh, mask) if mask is not None else module(*fresh)


def _with_labformer_weights(module: nn.Module, args: dict[str, Any]) -> Tensor:
    """The candidate loaded with the weights of labformer's own module, renamed to the lab's names
    (see ``labformer_weights``), on the case's inputs."""
    weights = labformer_weights(args["labformer"], args["init"], args["seed"])
    load_weights(module, weights)
    return _result(_call(module.eval(), _module_inputs(args), args))


def labformer_module(kind: str, init: list[Any]) -> nn.Module:
    """labformer's module for a lab piece, built from the lab's constructor arguments."""
    from labformer.attention.teaching import AttentionHead, ConcatHeadsAttention
    from labformer.encoder import FeedForward

    if kind == "AttentionHead":
        dim_embed, head_size, dropout = init
        return AttentionHead(dim_embed, head_size, dropout=dropout)
    if kind == "MultiHeadAttention":
        num_heads, dim_embed, head_size, dropout = init
        return ConcatHeadsAttention(dim_embed, num_heads, dropout=dropout, head_dim=head_size)
    dim_model, dropout = init
    return FeedForward(dim_model, 4 * dim_model, dropout=dropout)


def labformer_weights(kind: str, init: list[Any], seed: int) -> dict[str, Tensor]:
    """labformer's module's randomised weights under the lab's names — the documented mapping:

    - ``AttentionHead``: ``query``, ``key``, ``value`` → ``q_proj``, ``k_proj``, ``v_proj``;
    - ``MultiHeadAttention`` (labformer's ``ConcatHeadsAttention``): ``heads.i.query`` … →
      ``heads.i.q_proj`` …, ``proj.weight`` → ``fc.weight``, and ``fc.bias`` = 0 (labformer's has none);
    - ``FeedForward``: ``linear1`` → ``ffn.0``, ``linear2`` → ``ffn.2``.
    """
    module = randomise(labformer_module(kind, init), seed + 1)
    renames = {"query": "q_proj", "key": "k_proj", "value": "v_proj", "proj": "fc", "linear1": "ffn.0",
               "linear2": "ffn.2"}  # fmt: skip
    weights: dict[str, Tensor] = {}
    for name, tensor in parameters(module).items():
        parts = name.split(".")
        weights[".".join(renames.get(part, part) for part in parts)] = tensor
    if kind == "MultiHeadAttention":
        weights["fc.bias"] = torch.zeros(init[1])
    return weights


PROBES: dict[str, Callable[..., Outputs]] = {
    "single_query": single_query,
    "alpha": alpha,
    "batched": batched,
    "masked_weights": masked_weights,
    "positions": positions,
    "pair": pair,
}
