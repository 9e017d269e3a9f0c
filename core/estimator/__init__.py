"""The time-evolving liquidation-map estimator (DESIGN §4.1).

``reference.estimate`` walks the bars one by one and is the test oracle; ``fast.estimate`` gives
the same answer with no Python loop over bars. Both return an :class:`Estimate`.
"""

from core.estimator.params import EstimatorParams
from core.estimator.result import Estimate

__all__ = ["Estimate", "EstimatorParams"]
