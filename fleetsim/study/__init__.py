"""Analysis that feeds the report: replicated runs with confidence intervals, and the procurement
study (plan over GPU types, rent vs own, facility, carbon). Returns data; report/ renders it."""

from fleetsim.study.intervals import Interval, t_interval, wilson_interval
from fleetsim.study.replicates import DEFAULT_SEEDS, Replicates, replicate

__all__ = ["DEFAULT_SEEDS", "Interval", "Replicates", "replicate", "t_interval", "wilson_interval"]
