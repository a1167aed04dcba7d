"""Deliberate breakages of the rule, for ``tools/mutation_check.py`` (never imported otherwise).

``tools/mutation_check.py`` puts this folder first on ``PYTHONPATH`` with ``STLLR_MUTATION=<name>``,
so every Python process of a notebook run (the kernel and the sweep workers it spawns) starts with
the same breakage applied to ``stllr``. Each breakage is one a notebook's claims should catch:

- ``alpha_pre_zero``: the causal term is dropped in every hidden S-TLLR layer (alpha_pre = 0);
- ``lambda_pre_swapped``: hidden layers use lambda_post as the pre-trace decay (a wrong lambda_pre);
- ``zero_signal``: the learning signal of every hidden S-TLLR layer is zero (only the readout learns);
- ``bptt_instead``: every S-TLLR model is replaced by its BPTT twin, trained (and measured) with BPTT.
"""

import os

_NAME = os.environ.get("STLLR_MUTATION", "")
MUTATIONS = ("alpha_pre_zero", "lambda_pre_swapped", "zero_signal", "bptt_instead")


def _replace_everywhere(old, new):
    """Rebind ``old`` to ``new`` in every loaded stllr module (``from x import f`` copies the name)."""
    import sys

    for name, mod in list(sys.modules.items()):
        if name == "stllr" or name.startswith("stllr."):
            for attr, value in list(vars(mod).items()):
                if value is old:
                    setattr(mod, attr, new)


def _apply(name):
    import stllr  # noqa: F401  (loads the package and its submodules)
    from stllr import layers as L

    if name in ("alpha_pre_zero", "lambda_pre_swapped"):
        orig = L._STLLRBase._sequence_constants

        def _sequence_constants(self):
            c = orig(self)
            if isinstance(self, L.LeakyReadout):
                return c
            if name == "alpha_pre_zero":
                return c._replace(alpha_pre=0.0)
            return c._replace(lambda_pre=c.lambda_post)

        L._STLLRBase._sequence_constants = _sequence_constants
    elif name == "zero_signal":
        orig_backward = L._STLLRRule.backward

        def backward(ctx, delta):
            if not isinstance(ctx.layer, L.LeakyReadout):
                delta = delta.new_zeros(delta.shape)
            return orig_backward(ctx, delta)

        L._STLLRRule.backward = staticmethod(backward)
    elif name == "bptt_instead":
        from stllr import models as M
        from stllr import training as TR

        orig_build, orig_train_batch = M.build_model, TR.train_batch

        def build_model(arch, *args, **kw):
            spec = M.get_model_spec(arch)
            if spec.is_stllr:
                for k in ("rate_reg", "rate_target"):
                    kw.pop(k, None)
                kw["feedback_mode"] = "bp"
                return orig_build(spec.twin, *args, **kw)
            return orig_build(arch, *args, **kw)

        def train_batch(model, frames, labels, optimizer, loss_fn, mode="stllr", *args, **kw):
            if mode in ("stllr", "stllr_online"):
                mode = "bptt"
            return orig_train_batch(model, frames, labels, optimizer, loss_fn, mode, *args, **kw)

        from stllr import measure as ME

        orig_measure = ME.measure_sequence

        def measure_sequence(model, inputs, target, *args, **kw):
            if kw.get("mode") in ("stllr", "stllr_online"):
                kw["mode"], kw["window"] = "bptt", None
            return orig_measure(model, inputs, target, *args, **kw)

        _replace_everywhere(orig_build, build_model)
        _replace_everywhere(orig_train_batch, train_batch)
        _replace_everywhere(orig_measure, measure_sequence)
    else:
        raise SystemExit(f"STLLR_MUTATION: expected one of {MUTATIONS}, got {name!r}")


if _NAME:
    _apply(_NAME)
