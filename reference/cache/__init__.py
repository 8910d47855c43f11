"""The hybrid cache: L1 in process memory, L2 in Redis behind the circuit breaker.

`HybridCache` (in `hybrid.py`) is the facade; each concept lives next to its rules:
`_l1.py` (the store, stale copies, the fill stamp), `_l2.py` (Redis behind the breaker),
`_trust.py` (invalidations, trust in L1, resync after an outage), `_flight.py`
(single-flight, fail-safe loading). `CacheConfig` is built at the edge
(`reference/service/configs.py`).
"""

from reference.cache._common import JSON, CacheConfig, CacheResult, CacheSource, Loader
from reference.cache.hybrid import HybridCache
from reference.invalidation import SubscriberTiming

__all__ = [
    "JSON",
    "CacheConfig",
    "CacheResult",
    "CacheSource",
    "HybridCache",
    "Loader",
    "SubscriberTiming",
]
