"""The memory planner (the only one): lifetimes, operator order, in-place / fused execution,
arena placement, memory report and plot. See plan.py."""
from .plan import MemoryPlan, plan, plan_peak

__all__ = ["MemoryPlan", "plan", "plan_peak"]
