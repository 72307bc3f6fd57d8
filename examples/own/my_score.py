"""A scoring function of your own, in the signature of ``@register_method`` scorers.

``batch`` is (inputs, labels), 10 training images per class; ``mask`` the current mask (all True
for one-shot pruning); ``seed`` the run's seed. Return one score per prunable weight, higher =
keep. The short form ``def my_score(model, batch)`` is accepted too.
"""

import earlyprune as ep


def my_score(model, batch, mask, seed):
    # |w| relative to its layer's mean |w|: magnitude pruning with about the same sparsity in
    # every layer — an idea to check against the baselines.
    return {
        name: w.detach().abs() / w.detach().abs().mean() for name, w in ep.prunable(model).items()
    }
