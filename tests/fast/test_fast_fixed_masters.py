"""Fixed profile with optimizer hooks: the hooks read fp32 masters, but a master exists only
for a rule that has updated (Chainer creates it at the rule's first update)."""

import numpy as np

import fast


def _setup(loss_scaling):
    p = fast.Parameter(np.array([0.5, -0.25, 1.0], dtype=np.float16), name="w")
    q = fast.Parameter(np.array([2.0, 0.125], dtype=np.float16), name="v")
    opt = fast.optimizers.SGD(lr=0.1, profile="fixed").setup({"w": p, "v": q})
    opt.use_fp32_update()
    opt.add_hook(fast.optimizer_hooks.WeightDecay(0.01))
    if loss_scaling:
        opt.loss_scaling()
    return opt, p, q


def test_disabled_rule_gets_no_master_and_does_not_move():
    opt, p, q = _setup(loss_scaling=False)
    q.update_rule.enabled = False
    before = q.data.copy()
    p.grad = np.ones(3, np.float16)
    q.grad = np.ones(2, np.float16)
    opt.update()
    assert p.update_rule.fp32_param is not None
    assert q.update_rule.fp32_param is None
    assert q.data.tobytes() == before.tobytes()


def test_skipped_step_creates_no_master():
    opt, p, q = _setup(loss_scaling=True)
    p.grad = np.array([np.inf, 0, 0], np.float16)
    q.grad = np.ones(2, np.float16)
    opt.update()
    assert p.update_rule.fp32_param is None and q.update_rule.fp32_param is None
    p.grad = np.ones(3, np.float16) * np.float16(opt.loss_scale)
    q.grad = np.ones(2, np.float16) * np.float16(opt.loss_scale)
    opt.update()
    assert p.update_rule.fp32_param is not None
    np.testing.assert_array_equal(p.data, p.update_rule.fp32_param.astype(np.float16))
