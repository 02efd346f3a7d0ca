"""lambda_hat: estimate the local learning coefficient (LLC) of trained models.

Targets are synthetic teacher-student regressions trained to a minimum w*; samplers draw
from the localized tempered posterior around w* and record nβ·(L_n(w) − L_n(w*)); the
LLC estimate is its posterior mean. The workflow layer (:mod:`lambda_hat.workflow`) runs
targets × samplers as Parsl apps, routing float64 samplers to an x64 executor.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
