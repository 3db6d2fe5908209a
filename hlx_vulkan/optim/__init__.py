"""Optimizers and learning-rate schedules, their updates run as device kernels."""

from .optimizers import SGD, Adam, AdamW, Optimizer
from .schedulers import CosineAnnealingLR, StepLR

__all__ = ["Adam", "AdamW", "CosineAnnealingLR", "Optimizer", "SGD", "StepLR"]
