"""The catalog of planted bugs: each a small wrong variant of `fast`.

Every entry names the bug, the real-world bug class it models and where it is visible. Kernel
edits change fast's one-source per-element math or its CPU driver; Python patches change its
host-side code (hyperparameter tables, loss scaling, hook order, counters, serialization).
"""
from __future__ import annotations

from dataclasses import dataclass

from .planting import KernelEdit, PythonPatch

MATH = "update_math.h"
DRIVER = "cpu_driver.cpp"
CUDA_DRIVER = "cuda_driver.cu"
PIPELINE = "element_pipeline.h"
#: The devices whose build runs the code of each kernel file a mutant edits: the update math
#: everywhere; the CPU driver on the CPU; the CUDA driver, and the per-element gradient
#: pipeline that only it calls, on the GPU and in its host emulation.
ALL_DEVICES = ("cpu", "gpu", "gpu-emulated")
CUDA_DEVICES = ("gpu", "gpu-emulated")
FILE_DEVICES = {MATH: ALL_DEVICES, DRIVER: ("cpu",), CUDA_DRIVER: CUDA_DEVICES, PIPELINE: CUDA_DEVICES}


@dataclass(frozen=True)
class Mutant:
    name: str
    models: str          # the real-world bug it stands for
    visible: str         # where the suite can see it
    plant: tuple         # KernelEdit / PythonPatch objects, applied in order
    ranks: int = 1       # > 1: a bug of fast.distributed, run on the distributed slice under
                         # `mpiexec -n <ranks>` (every rank plants it before fast is used)
    params: str = "impl"  # "chainer": a bug of the layer between fast and Chainer's objects, run
                          # with `--params chainer` (conformance.params; needs Chainer)

    @property
    def kind(self) -> str:
        """'kernel' (an edit of fast's kernel sources) or 'python' (a host-side patch)."""
        return "kernel" if any(isinstance(p, KernelEdit) for p in self.plant) else "python"

    @property
    def devices(self) -> tuple:
        """The devices on which the planted code runs (host code runs on all of them)."""
        if self.ranks > 1:  # the "mpi" communicator exchanges NumPy arrays
            return ("cpu",)
        files = [p.file for p in self.plant if isinstance(p, KernelEdit)]
        return tuple(d for d in ALL_DEVICES if all(d in FILE_DEVICES[f] for f in files))


def _kernel(name, models, visible, file, old, new):
    return Mutant(name, models, visible, (KernelEdit(file, old, new),))


def _python(name, models, visible, owner, attribute, make):
    return Mutant(name, models, visible, (PythonPatch(owner, attribute, make),))


def _distributed(name, models, visible, owner, attribute, make, params="impl"):
    """A host-side patch of fast.distributed, run on 3 ranks (uneven shards)."""
    return Mutant(name, models, visible, (PythonPatch(owner, attribute, make),), ranks=3, params=params)


def _integration(name, models, visible, owner, attribute, make):
    """A host-side patch of the layer between fast and Chainer's objects (fast.boundary, the
    engine's handling of lazily initialized parameters), run with `--params chainer`."""
    return Mutant(name, models, visible, (PythonPatch(owner, attribute, make),), params="chainer")


# -- the Chainer integration layer ---------------------------------------------------------------
def _grad_written_to_a_private_attribute(original):
    """The gradient stored where a chainer.Parameter does not read it once backward has run
    (its grad_var keeps the gradient backward left)."""
    def set_grad(p, grad):
        p._grad = grad
    return staticmethod(set_grad)


def _recorded_loss_scale_ignored(original):
    """Every gradient divided by the optimizer's loss scale, never by the one backward
    recorded on its parameter."""
    return staticmethod(lambda p, optimizer_scale: optimizer_scale)


def _lazy_parameters_never_join(original):
    """A parameter without an array at setup is never taken into the engine."""
    def sync_parameters(self):
        members = self.members
        self.members = [e for e in members if e.group is not None]
        try:
            return original(self)
        finally:
            self.members = members
    return sync_parameters


# -- fast.distributed patch factories ---------------------------------------------------------
def _no_scaling(original):
    def mean_factor(n_ranks):
        return 1.0
    return mean_factor


def _local_partial_sums(original):
    def combine_partial_sums(comm, sums):
        return sums
    return combine_partial_sums


def _local_nonfinite_flags(original):
    def combine_nonfinite_flags(comm, flags):
        return flags
    return combine_nonfinite_flags


def _shard_edge_off_by_one(original):
    def shard_range(total, n_ranks, rank):
        begin, end = original(total, n_ranks, rank)
        return (begin + 1 if rank > 0 else begin), end
    return shard_range


# -- Python patch factories ---------------------------------------------------------------------
def _msvag_beta_power_ahead(original):
    def make_table(cls, raw, t, extras, dtype):
        ahead = dict(extras, beta_power=extras["beta_power"] * raw[:, 1])
        return original.__func__(cls, raw, t, ahead, dtype)
    return classmethod(make_table)


def _shift_t(delta):
    def make(original):
        return classmethod(lambda cls, raw, t, extras, dtype:
                           original.__func__(cls, raw, t + delta, extras, dtype))
    return make


def _table_edit(edit):
    """Wrap a rule family's kernel_table and edit the table it returns."""
    def make(original):
        def kernel_table(cls, raw, t, extras, dtype):
            return edit(original.__func__(cls, raw, t, extras, dtype), dtype)
        return classmethod(kernel_table)
    return make


def _swap_columns(i, j):
    def edit(table, dtype):
        table[:, [i, j]] = table[:, [j, i]]
        return table
    return edit


def _fp16_eps(column):
    """eps rounded to the update dtype when that is float16 (no master): 1e-8 becomes 0."""
    def edit(table, dtype):
        import numpy
        if numpy.dtype(dtype) == numpy.float16:
            table[:, column] = table[:, column].astype(numpy.float16)
        return table
    return edit


def _next_scale_without_clamp(original):
    def next_scale(self):
        if not self.dynamic:
            return
        multiplier = 0.5 if self.isnan else (self.multiplier if self.isnan_ever else 2.0)
        self.scale = min(65504.0, self.scale * multiplier)
    return next_scale


def _next_scale_always_doubling(original):
    def next_scale(self):
        if self.dynamic and not self.isnan:
            self.isnan_ever = False
        return original(self)
    return next_scale


def _next_scale_after_skip_grows(original):
    def next_scale(self):
        if self.dynamic and self.isnan:
            self.isnan = False
        return original(self)
    return next_scale


def _growth_stops_after_two_intervals(original):
    """A count of good steps since the last non-finite one saturates at two intervals, and
    the dynamic scale stops growing from then on."""
    def next_scale(self):
        if self.dynamic and self.isnan_ever:
            import math
            self.good_steps = 0 if self.isnan else getattr(self, "good_steps", 0) + 1
            if self.good_steps > 2 * round(1 / math.log2(self.multiplier)):
                return None
        return original(self)
    return next_scale


def _bias_correction_dropped_after_1000(original):
    """Rows whose t passed 1000 step with alpha_t = alpha (bias correction taken as 1)."""
    def kernel_table(cls, raw, t, extras, dtype):
        table = original.__func__(cls, raw, t, extras, dtype)
        late = t > 1000
        table[late, 2] = raw[late, 0]
        return table
    return classmethod(kernel_table)


def _master_not_written_on_step_4(original):
    """The optimizer's 4th step leaves every fp16 parameter that has a master as it was."""
    def update(self, *args, **kwargs):
        import numpy
        kept = [(p, numpy.array(p.data, copy=True)) for _, p in self.named_parameters()] if self.t == 3 else []
        result = original(self, *args, **kwargs)
        for p, old in kept:
            if p.update_rule.fp32_param is not None:
                p.data[...] = old
        return result
    return update


def _reversed_hooks(original):
    def get(self, timing):
        return list(reversed(original(self, timing)))
    return get


def _rule_t_on_skipped_steps(original):
    def update(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        if not self.is_safe_to_update():
            for g in self.engine.groups:
                g.t[g.enabled.astype(bool) & g.initialized.astype(bool)] += 1
        return result
    return update


def _opt_t_not_on_skipped_steps(original):
    def update(self, *args, **kwargs):
        result = original(self, *args, **kwargs)
        if not self.is_safe_to_update():
            self.t -= 1
        return result
    return update


def _no_eps_check(original):
    return lambda *args, **kwargs: None


def _rejected_before_anything(original):
    """The rejected update raised before anything changes (fast before issue #23)."""
    def stop(self):
        rejected = self._rejected_rule()
        if rejected is not None:
            self._check_update(self._named[rejected][1])
        return original(self)
    return stop


def _rejected_rule_untouched(original):
    def raise_rejected(self, ops, scale):
        self._check_update(self._named[self._engine.stop_at][1])
    return raise_rejected


def _nothing_steps_before_rejected(original):
    def stepping(self, g):
        active = original(self, g)
        if self.stop_at is not None:
            active[:] = 0
        return active
    return stepping


def _everything_steps_despite_rejected(original):
    def stepping(self, g):
        stop_at, self.stop_at = self.stop_at, None
        try:
            return original(self, g)
        finally:
            self.stop_at = stop_at
    return stepping


def _weight_decay_unscaled_rate(original):
    def plan(self, ctx):
        from fast import hook_ops
        ctx.ops.append(hook_ops.ConstOp(hook_ops.ADD_PARAM, self.rate))
    return plan


def _noise_from_optimizer(original):
    def plan(self, ctx):
        import numpy
        from fast import hook_ops
        arrays = [numpy.ascontiguousarray(
            numpy.asarray(self.noise_func(numpy, tuple(e.array().shape), ctx.hook_dtype(e),
                                          self, ctx.optimizer)), dtype=ctx.hook_dtype(e))
                  for e in ctx.entries]
        ctx.ops.append(hook_ops.NoiseOp(arrays))
    return plan


def _clip_ignores_rate_threshold(original):
    def plan(self, ctx):
        from fast import hook_ops
        gsq, _ = ctx.sums_of_squares()
        norm = float(sum(gsq[e.index] for e in ctx.entries)) ** 0.5
        if norm > 0:
            ctx.ops.append(hook_ops.ConstOp(hook_ops.SCALE, self.threshold / norm,
                                            round_to_grad_dtype=False))
    return plan


def _disabled_rules_still_step(original):
    def update(self, hooks, loss_scale, hooked_rules_path):
        saved = [g.enabled.copy() for g in self.groups]
        for g in self.groups:
            g.enabled[:] = 1
        try:
            return original(self, hooks, loss_scale, hooked_rules_path)
        finally:
            for g, enabled in zip(self.groups, saved):
                g.enabled[:] = enabled
    return update


def _state_through_fp16_on_load(original):
    """The npz reader rounds every float array it loads (except the master) through fp16."""
    def read(self, key, value):
        import numpy
        result = original(self, key, value)
        if (isinstance(result, numpy.ndarray) and result.dtype.kind == "f"
                and result.dtype != numpy.float16 and not self.check_only
                and key != "fp32_param" and result.size):
            result[...] = result.astype(numpy.float16)
        return result
    return read


def _rule_t_not_read_on_load(original):
    """The npz reader ignores each rule's saved step count (only the optimizer's is read)."""
    def read(self, key, value):
        if key == "t" and self.path:
            return value
        return original(self, key, value)
    return read


def _loss_scale_reset_on_load(original):
    def load_npz(file, obj, *args, **kwargs):
        result = original(file, obj, *args, **kwargs)
        if obj.scaling.dynamic:
            obj.scaling.restore(1.0, *obj.scaling.fields()[1:])
        return result
    return load_npz


def _t_not_restored_on_load(original):
    def load_npz(file, obj, *args, **kwargs):
        saved = obj.t
        result = original(file, obj, *args, **kwargs)
        obj.t = saved
        return result
    return load_npz


def _none_grad_skips_rule(original):
    def update(self, *args, **kwargs):
        skipped = [p for _, p in self.named_parameters() if p.grad is None and p.update_rule.enabled]
        for p in skipped:
            p.update_rule.enabled = False
        try:
            return original(self, *args, **kwargs)
        finally:
            for p in skipped:
                p.update_rule.enabled = True
    return update


def _overrides_ignored(original):
    def refresh(self):
        result = original(self)
        if len(self.raw):
            self.raw[:] = self.raw[0]
        return result
    return refresh


def _zero_norm_nan_in_fixed(original):
    def plan(self, ctx):
        if ctx.semantics.zero_norm_leaves_gradients:
            from fast import hook_ops
            gsq, _ = ctx.sums_of_squares()
            norm = float(sum(gsq[e.index] for e in ctx.entries)) ** 0.5
            rate = self.threshold / norm if norm else float("nan")
            if not rate >= 1:
                ctx.ops.append(hook_ops.ConstOp(hook_ops.SCALE, rate, round_to_grad_dtype=False))
            return
        return original(self, ctx)
    return plan


ADAM = "fast.optimizers.adam:AdamRule"
MSVAG = "fast.optimizers.msvag:MSVAGRule"
OPT = "fast.optimizer:GradientMethod"

CATALOG = (
    # --- per-element math (update_math.h) ---------------------------------------------------
    _kernel("adam-swapped-betas", "beta1 and beta2 swapped in a fused Adam kernel",
            "every Adam-family case", MATH,
            "T m = s.keep(0, s[0] + hp[0] * (g - s[0]));\n        T v = s.keep(1, s[1] + hp[1] * (g * g - s[1]));",
            "T m = s.keep(0, s[0] + hp[1] * (g - s[0]));\n        T v = s.keep(1, s[1] + hp[0] * (g * g - s[1]));"),
    _kernel("adam-eps-inside-sqrt", "eps added under the square root (sqrt(v + eps))",
            "Adam family where sqrt(v) is near eps (small or zero gradients)", MATH,
            "T step = hp[2] / (fast_sqrt(vhat) + hp[3]);", "T step = hp[2] / fast_sqrt(vhat + hp[3]);"),
    _kernel("amsgrad-max-not-stored", "AMSGrad's running max computed but never written back",
            "AMSGrad/AMSBound from step 2, when v decreases", MATH,
            "            s.set(2, vhat);\n", ""),
    Mutant("amsgrad-max-of-old-v", "AMSGrad takes the max with the previous v instead of the new one",
           "AMSGrad/AMSBound",
           (KernelEdit(MATH, "T v = s.keep(1, s[1] + hp[1] * (g * g - s[1]));",
                       "const T v_before = s[1];\n        T v = s.keep(1, s[1] + hp[1] * (g * g - s[1]));"),
            KernelEdit(MATH, "vhat = nan_max(s[2], v);", "vhat = nan_max(s[2], v_before);"))),
    _kernel("adabound-clamp-missing", "AdaBound's step-size clamp dropped",
            "AdaBound/AMSBound when the step leaves [lower, upper]", MATH,
            "        if (ADABOUND) step = nan_clip(step, hp[4], hp[5]);\n", ""),
    _kernel("adamw-decay-dropped", "decoupled weight decay not applied in the fused path",
            "AdamW / Adam with weight_decay_rate", MATH,
            "p = hp[6] * p + delta;", "p = p + delta;"),
    _kernel("momentum-state-not-stored", "velocity computed but not written back",
            "MomentumSGD from step 2", MATH,
            "        v = s.keep(0, v - hp[1] * g);\n        p = p + v;",
            "        v = round_to<S>(v - hp[1] * g);\n        p = p + v;"),
    _kernel("corrected-momentum-lr-on-grad", "CorrectedMomentumSGD scales the gradient, not the velocity",
            "CorrectedMomentumSGD", MATH,
            "        v = s.keep(0, v - g);\n        p = p + hp[1] * v;",
            "        v = s.keep(0, v - hp[1] * g);\n        p = p + v;"),
    _kernel("nesterov-momentum-not-squared", "Nesterov look-ahead uses momentum instead of momentum^2",
            "NesterovAG from step 2", MATH,
            "p = round_to<P>(p + hp[2] * v);", "p = round_to<P>(p + hp[0] * v);"),
    _kernel("adagrad-eps-inside-sqrt", "AdaGrad with eps under the square root",
            "AdaGrad", MATH,
            "p = p - hp[0] * g / (fast_sqrt(h) + hp[1]);", "p = p - hp[0] * g / fast_sqrt(h + hp[1]);"),
    _kernel("adadelta-ratio-inverted", "AdaDelta's RMS ratio inverted",
            "AdaDelta", MATH,
            "T dx = fast_sqrt((s[1] + hp[2]) / (msg + hp[2])) * g;",
            "T dx = fast_sqrt((msg + hp[2]) / (s[1] + hp[2])) * g;"),
    _kernel("rmsprop-eps-inside-ignored", "eps_inside_sqrt flag ignored by the kernel",
            "RMSprop with eps_inside_sqrt=True", MATH,
            "T denom = hp[4] != fast_const<T>(0) ? fast_sqrt(ms + hp[2]) : fast_sqrt(ms) + hp[2];",
            "T denom = fast_sqrt(ms) + hp[2];"),
    _kernel("graves-variance-without-mean", "RMSpropGraves drops the a^2 term (n - a^2)",
            "RMSpropGraves", MATH,
            "fast_sqrt(n - a * a + hp[4])", "fast_sqrt(n + hp[4])"),
    _kernel("msvag-nan-rule-missing", "MSVAG's factor NaN -> 0 rule missing (0/0 on zero gradients)",
            "MSVAG with exact-zero gradients", MATH,
            "        factor = (factor != factor) ? fast_const<T>(0) : factor;\n", ""),
    _kernel("msvag-clamp-missing", "MSVAG's factor not clamped to [0, 1]",
            "MSVAG where rounding makes the variance estimate negative", MATH,
            "        factor = nan_clip(factor, fast_const<T>(0), fast_const<T>(1));\n", ""),
    _kernel("smorms3-min-missing", "SMORMS3 uses x instead of min(x, lr)",
            "SMORMS3", MATH,
            "p = p - g * nan_min(x, hp[0]) / (fast_sqrt(a2) + hp[1]);",
            "p = p - g * x / (fast_sqrt(a2) + hp[1]);"),
    _kernel("smorms3-memory-uses-r", "SMORMS3 memory update with r in place of x",
            "SMORMS3 from step 1 (mem state)", MATH,
            "s.keep(0, fast_const<T>(1) + s[0] * (fast_const<T>(1) - x));",
            "s.keep(0, fast_const<T>(1) + s[0] * (fast_const<T>(1) - r));"),
    _kernel("fp16-state-not-rounded", "fp16 state kept at fp32 precision between in-place steps",
            "float16 without master (RMSprop with an eps float16 can hold)", MATH,
            "        T ms = round_to<S>(s[0] * hp[0]);\n        ms = s.keep(0, ms + hp[1] * g * g);",
            "        T ms = s[0] * hp[0];\n        ms = s.keep(0, ms + hp[1] * g * g);"),
    _kernel("lasso-sign-of-grad", "Lasso uses sign(grad) instead of sign(param)",
            "Lasso hook", MATH,
            "round_to<H>(a * sign_of(p))", "round_to<H>(a * sign_of(g))"),
    _kernel("hard-clipping-bounds-swapped", "GradientHardClipping bounds passed in the wrong order",
            "GradientHardClipping hook", MATH,
            "case HOOK_CLIP: return round_to<H>(nan_clip(g, a, b));",
            "case HOOK_CLIP: return round_to<H>(nan_clip(g, b, a));"),
    _kernel("noise-subtracted", "gradient noise subtracted instead of added",
            "GradientNoise hook", MATH,
            "case HOOK_ADD_NOISE: return round_to<H>(g + noise);",
            "case HOOK_ADD_NOISE: return round_to<H>(g - noise);"),
    # --- the CPU driver (cpu_driver.cpp) ----------------------------------------------------
    Mutant("loss-scale-not-divided-with-master", "gradients not unscaled in the fp32-master path",
           "float16 + master with loss scaling",
           (KernelEdit(DRIVER, "if (a.unscale && !a.unscale_first) {\n        if (M::MASTER) for (int j = 0; j < n; ++j) gb[j] = gb[j] / divisor;",
                       "if (a.unscale && !a.unscale_first) {\n        if (M::MASTER) for (int j = 0; j < n; ++j) gb[j] = gb[j];"),
            KernelEdit(DRIVER, "const bool divide_in_loop = UNSCALE && (g_direct || (M::MASTER && !HOOKS));",
                       "const bool divide_in_loop = UNSCALE && g_direct;"))),
    _kernel("master-not-copied-back", "fp16 parameter not rewritten from the updated fp32 master",
            "float16 + master", DRIVER,
            "        if constexpr (M::MASTER || !P_DIRECT) tile_store(pp, param + i0, n);",
            "        if constexpr (!M::MASTER && !P_DIRECT) tile_store(pp, param + i0, n);"),
    _kernel("vector-tail-dropped", "vectorized loop forgets the remainder (size not a multiple of 8)",
            "odd sizes, size 1, scalars", DRIVER,
            "    for (int j = 0; j < n; ++j) {\n        StateSlots<T, S> s;",
            "    for (int j = 0; j < (n & ~7); ++j) {\n        StateSlots<T, S> s;"),
    _kernel("norm-stride-2", "sum of squares reads every other element (wrong stride)",
            "GradientClipping / GradientLARS", DRIVER,
            "                    for (int l = 0; l < 8; ++l) {\n                        gl[l] +=",
            "                    for (int l = 0; l < 8; l += 2) {\n                        gl[l] +="),
    _kernel("nonfinite-check-skips-last", "inf/NaN check misses the last element of each tensor",
            "dynamic loss scaling with a non-finite value in the last element", DRIVER,
            "    const int64_t n = end - begin;\n    const int64_t q = n / CHECK_STREAMS;",
            "    const int64_t n = end - begin - 1;\n    const int64_t q = n / CHECK_STREAMS;"),
    _kernel("nonfinite-check-in-reduction-skips-last",
            "inf/NaN check fused into the norm pass misses the last element of each tile",
            "dynamic loss scaling with GradientClipping / GradientLARS and a non-finite value in "
            "the last element", DRIVER,
            "if (check && !nonfinite) nonfinite = any_nonfinite((const P*)a.grad[t] + i0, n);",
            "if (check && !nonfinite) nonfinite = any_nonfinite((const P*)a.grad[t] + i0, n - 1);"),
    _kernel("state-not-stored-for-fp16", "state written back only when it is not fp16",
            "float16 without master", DRIVER,
            "        if constexpr (!S_DIRECT)\n            for (int k = 0; k < Rule::n_state; ++k) tile_store(sb[k], st[k] + i0, n);",
            "        if constexpr (false)\n            for (int k = 0; k < Rule::n_state; ++k) tile_store(sb[k], st[k] + i0, n);"),
    # --- the CUDA driver (cuda_driver.cu) and its gradient pipeline (element_pipeline.h) ------
    _kernel("cuda-skip-flag-ignored", "device-side skip decision not honoured by the update kernel",
            "dynamic loss scaling with a non-finite gradient, on the device path", CUDA_DRIVER,
            "    if (skip != nullptr && *skip) return;",
            "    if (skip != nullptr && *skip < 0) return;"),
    _kernel("cuda-master-not-written", "fused GPU kernel updates the fp16 parameter but not its fp32 master",
            "float16 + master, on the device path", CUDA_DRIVER,
            "            if (M::MASTER) master[i] = (float)p;\n",
            ""),
    _kernel("cuda-reduce-tree-half", "block reduction starts at a quarter of the block (half the partial sums lost)",
            "GradientClipping / GradientLARS on tensors over 128 elements, on the device path", CUDA_DRIVER,
            "for (int w = FAST_BLOCK / 2; w > 0; w >>= 1)",
            "for (int w = FAST_BLOCK / 4; w > 0; w >>= 1)"),
    _kernel("cuda-check-skips-chunk-end", "inf/NaN check misses the last element of each chunk",
            "dynamic loss scaling with a non-finite value in the last element, on the device path",
            CUDA_DRIVER,
            "        const P* g = (const P*)a.grad[t];\n        for (int64_t i = a.chunk_begin[c] + threadIdx.x; i < a.chunk_end[c];",
            "        const P* g = (const P*)a.grad[t];\n        for (int64_t i = a.chunk_begin[c] + threadIdx.x; i + 1 < a.chunk_end[c];"),
    _kernel("cuda-master-grad-not-unscaled", "gradients not unscaled in the device's fp32-master path",
            "float16 + master with loss scaling, on the device path", PIPELINE,
            "        if (M::MASTER) g = g / divisor;",
            "        if (M::MASTER) g = g;"),
    # --- host-side hyperparameters ------------------------------------------------------------
    _python("adam-bias-correction-off-by-one", "bias correction computed with t + 1",
            "Adam family, every step", ADAM, "kernel_table", _shift_t(1)),
    _python("adam-bias-correction-dropped-after-1000",
            "bias correction switched off once t > 1000 (taken as converged)",
            "Adam family resumed at t = 1000", ADAM, "kernel_table",
            _bias_correction_dropped_after_1000),
    _python("adam-host-betas-swapped", "1 - beta1 and 1 - beta2 swapped in the host table",
            "Adam family", ADAM, "kernel_table", _table_edit(_swap_columns(0, 1))),
    _python("adam-eps-cast-to-fp16", "eps rounded to float16 (1e-8 -> 0) for fp16 parameters",
            "Adam family with sqrt(v) ~ 0: zero gradients", ADAM, "kernel_table",
            _table_edit(_fp16_eps(3))),
    _python("msvag-step-count-off-by-one", "MSVAG's bias correction uses beta^(t+1)",
            "MSVAG", MSVAG, "kernel_table", _msvag_beta_power_ahead),
    _python("eps-check-missing", "no error for an eps that underflows in the update dtype",
            "the tiny-eps error cases", "fast.optimizers.adam", "check_eps_for", _no_eps_check),
    _python("rejected-update-changes-nothing",
            "an update Chainer rejects midway (eps too small) raised before anything changes",
            "the error/ cases (opt.t, rule.t)", OPT, "_stop_at_rejected_rule",
            _rejected_before_anything),
    _python("rejected-rule-untouched",
            "the rejected rule's t, state and master left as they were",
            "the error/ cases (rule.t)", OPT, "_raise_rejected", _rejected_rule_untouched),
    _python("rules-before-rejected-not-updated",
            "the rules before the rejected one not updated",
            "error/*-after-updates* cases", "fast.engine:Engine", "stepping",
            _nothing_steps_before_rejected),
    _python("rules-after-rejected-updated",
            "the rules after the rejected one (and it) updated before raising",
            "error/* cases with a rule after the rejected one", "fast.engine:Engine", "stepping",
            _everything_steps_despite_rejected),
    _python("per-rule-overrides-ignored", "per-parameter hyperparameter overrides ignored by grouping",
            "cases with overrides", "fast.engine:Group", "refresh_hparams", _overrides_ignored),
    # --- loss scaling and counters ------------------------------------------------------------
    _python("loss-scale-floor-missing", "dynamic loss scale allowed to fall below 1",
            "a non-finite gradient at step 1", "fast.loss_scaling:LossScaling", "next_scale",
            _next_scale_without_clamp),
    _python("loss-scale-forgets-overflow", "growth back at x2 after an overflow (isnan_ever lost)",
            "dynamic scaling after a skipped step", "fast.loss_scaling:LossScaling", "next_scale",
            _next_scale_always_doubling),
    _python("loss-scale-grows-on-skip", "scale not halved on a non-finite step",
            "dynamic scaling with a non-finite gradient", "fast.loss_scaling:LossScaling",
            "next_scale", _next_scale_after_skip_grows),
    _python("loss-scale-growth-stops-after-two-intervals",
            "a saturating good-step counter: growth stops two intervals after a skip",
            "dynamic scaling, more than two intervals of good steps after a skip",
            "fast.loss_scaling:LossScaling", "next_scale", _growth_stops_after_two_intervals),
    _python("rule-t-advanced-on-skip", "rule step counter advanced on skipped steps",
            "dynamic scaling with a skipped step", OPT, "update", _rule_t_on_skipped_steps),
    _python("opt-t-not-advanced-on-skip", "optimizer t not advanced on skipped steps",
            "dynamic scaling with a skipped step", OPT, "update", _opt_t_not_on_skipped_steps),
    _python("master-not-written-on-step-4",
            "fp16 parameters not rewritten from their masters on one step (the 4th)",
            "float16 + master, step 4 not skipped", OPT, "update", _master_not_written_on_step_4),
    _python("disabled-rules-updated", "disabled update rules still stepped by the fused pass",
            "cases with a disabled rule", "fast.engine:Engine", "update", _disabled_rules_still_step),
    _python("none-grad-skips-update", "a None gradient skips the rule instead of counting as zeros",
            "cases with an injected None gradient", OPT, "update", _none_grad_skips_rule),
    # --- hooks ----------------------------------------------------------------------------------
    _python("hooks-in-reverse-order", "optimizer hooks run in reverse registration order",
            "cases with two or more pre hooks", "fast.hookable:Hookable", "get", _reversed_hooks),
    _python("weight-decay-rate-not-scaled", "WeightDecay rate not multiplied by the loss scale",
            "WeightDecay with loss scaling, chainer profile", "fast.optimizer_hooks.weight_decay:WeightDecay",
            "plan", _weight_decay_unscaled_rate),
    _python("noise-func-gets-optimizer", "noise_func receives the optimizer (not the rule)",
            "GradientNoise after a skipped step (opt.t != rule.t)",
            "fast.optimizer_hooks.gradient_noise:GradientNoise", "plan", _noise_from_optimizer),
    _python("clipping-always-rescales", "GradientClipping rescales even when the norm is below threshold",
            "GradientClipping with a small norm", "fast.optimizer_hooks.gradient_clipping:GradientClipping",
            "plan", _clip_ignores_rate_threshold),
    _python("clipping-zero-norm-nan-fixed", "fixed profile: zero gradient norm makes NaN",
            "GradientClipping on zero gradients, fixed profile",
            "fast.optimizer_hooks.gradient_clipping:GradientClipping", "plan", _zero_norm_nan_in_fixed),
    # --- serialization ------------------------------------------------------------------------
    _python("state-through-fp16-on-load", "state cast to fp16 on load",
            "checkpoints with fp32/float64 state", "fast.serializers:NpzDeserializer", "__call__",
            _state_through_fp16_on_load),
    _python("rule-t-not-restored-on-load", "each rule's step count not restored on load",
            "checkpoints (bias corrections restart)", "fast.serializers:NpzDeserializer",
            "__call__", _rule_t_not_read_on_load),
    _python("loss-scale-reset-on-load-fixed", "dynamic loss scale reset to 1 on load",
            "checkpoints with dynamic scaling, fixed profile", "fast.serializers", "load_npz",
            _loss_scale_reset_on_load),
    _python("t-not-restored-on-load", "optimizer t not restored from the checkpoint",
            "checkpoints", "fast.serializers", "load_npz", _t_not_restored_on_load),
)


CATALOG += (
    # --- the layer between fast and Chainer's objects (--params chainer) ----------------------
    _integration("backward-loss-scale-ignored",
                 "the loss scale backward(loss_scale=S) recorded on each parameter ignored (a 4x step)",
                 "static loss scaling, --params chainer", "fast.boundary:ChainerKind", "loss_scale",
                 _recorded_loss_scale_ignored),
    _integration("lazy-parameter-never-updated",
                 "a parameter of a lazily initialized link never joins the engine",
                 "every case with two or more parameters, --params chainer", "fast.engine:Engine",
                 "sync_parameters", _lazy_parameters_never_join),
)


DISTRIBUTED = "fast.distributed.sharding"
CATALOG += (
    # --- fast.distributed (run on the distributed slice, 3 ranks) ----------------------------
    _distributed("mean-not-divided-by-n", "the gradient sum over ranks used as the mean",
                 "every distributed case", "fast.distributed.exchange", "mean_factor",
                 _no_scaling),
    _distributed("zero-norm-over-local-shard",
                 "ZeRO: GradientClipping/GradientLARS norms taken over the rank's shard only",
                 "norm cases under zero=True", DISTRIBUTED, "combine_partial_sums",
                 _local_partial_sums),
    _distributed("zero-skip-decided-locally",
                 "ZeRO: the dynamic loss-scaling skip decided from the rank's shard only",
                 "one rank's non-finite gradient under zero=True", DISTRIBUTED,
                 "combine_nonfinite_flags", _local_nonfinite_flags),
    _distributed("zero-shard-edge-off-by-one",
                 "ZeRO: each shard after the first starts one element late (an element updated "
                 "by no rank)", "every zero=True case", DISTRIBUTED, "shard_range",
                 _shard_edge_off_by_one),
    _distributed("mean-gradient-written-where-chainer-does-not-read",
                 "replicated: the mean gradient written to a private attribute of a "
                 "chainer.Parameter, so every rank steps on its own gradient",
                 "every replicated case, --params chainer", "fast.boundary:ChainerKind", "set_grad",
                 _grad_written_to_a_private_attribute, params="chainer"),
)


def by_name(name: str) -> Mutant:
    for mutant in CATALOG:
        if mutant.name == name:
            return mutant
    raise KeyError(f"no mutant named {name!r}")
