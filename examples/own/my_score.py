"""A scoring function of your own, in the signature of ``@register_method`` scorers.

``batch`` is (inputs, labels), 10 training images per class; ``mask`` the current mask (all True
for one-shot pruning); ``seed`` the run's seed. Return one score per prunable weight, higher =
keep. The short form ``def my_score(model, batch)`` is accepted too.
"""

import earlyprune as ep


def my_score(model, batch, mask, seed):
    # |w| times the number of the layer's weights: a deliberately naive idea to check.
    return {name: w.detach().abs() * w.numel() for name, w in ep.prunable(model).items()}
