"""A team's port of its Chainer training code to torch.optim, as the conformance gate sees it.

The team trained with Chainer's `Adam(alpha=1e-3)` and `GradientClipping(5.0)`; its PyTorch
training step now reads

    opt = torch.optim.Adam(model.parameters(), lr=alpha, betas=(beta1, beta2), eps=eps,
                           fused=True)
    ...
    for group in opt.param_groups:                     # before every opt.step()
        group["eps"] = eps / math.sqrt(1 - beta2 ** t)
    norm = ...; rate = threshold / norm; ...            # the clipping recipe

and this module states exactly that code once, so the gate runs what the training runs:

    python -m conformance gate --impl examples.my_torch_port --filter /Adam/

(docs/migration.md; the cases the port cannot run, such as loss scaling, are reported as not
applicable). Keep this module next to the training code and import the strings from it there,
so the two cannot drift apart.
"""
from conformance.adapters import mappings
from conformance.adapters import torch as torch_adapter

EPS_T = ('for group in opt.param_groups:\n'
         '    group["eps"] = eps / math.sqrt(1 - beta2 ** t)')

ADAM = mappings.Mapping(
    name="our Adam", library="torch", chainer="Adam", kind="mapping",
    counterpart="torch.optim.Adam", arguments=("alpha", "beta1", "beta2", "eps"),
    build="torch.optim.Adam(params, lr=alpha, betas=(beta1, beta2), eps=eps, fused=True)",
    before_step=EPS_T,
    state=(("m", "exp_avg", "1"), ("v", "exp_avg_sq", "1")))

CLIPPING = mappings.find("torch", "GradientClipping")

_port = torch_adapter.contract_for({"Adam": ADAM, "GradientClipping": CLIPPING}, path="fused")
Parameter = _port.Parameter
optimizers = _port.optimizers
optimizer_hooks = _port.optimizer_hooks
serializers = _port.serializers
