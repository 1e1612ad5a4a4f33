"""Offline tools: work on traces and on the pool, not on live requests.

- ``replay``: run the policies over a carbon-intensity trace and a request trace (the paper's study);
- ``report``: write a replay study's tables (CSV, JSON) and figures;
- ``plots``: the figures (matplotlib, the ``plots`` extra);
- ``profiling``: measure each pool model's latency and energy per inference (the paper's Table 1).

Imports: ``gateway.policy``, ``gateway.carbon`` (traces), ``gateway.energy`` (meters), ``gateway.triton``
(profiling), ``gateway.pool``; never serving or HTTP.
"""
