"""The convolutional net of ``hlx train digits --model cnn``: three 3x3 convolutions with batch
norm and ReLU, two 2x2 max pools, and a linear classifier, over the 8x8 digit images.

Example::

    from hlx_vulkan.training.digits import train_digits
    result = train_digits(seed=0, model="cnn")   # >= 98.5% test accuracy
"""

from __future__ import annotations

from ..nn import BatchNorm2d, Conv2d, Linear, MaxPool2d, Module, ReLU, Sequential
from ..ops import shape as sh
from ..ops.tensor import Tensor


class DigitsCNN(Module):
    """(B, 64) pixels -> (B, 10) logits: conv(1->w/2)-bn-relu, conv(w/2->w)-bn-relu, pool to 4x4,
    conv(w->2w)-bn-relu, pool to 2x2, linear(8w -> 10)."""

    def __init__(self, width: int = 32):
        super().__init__()
        half = max(width // 2, 1)
        self.features = Sequential(
            Conv2d(1, half, 3, padding=1, bias=False), BatchNorm2d(half), ReLU(),
            Conv2d(half, width, 3, padding=1, bias=False), BatchNorm2d(width), ReLU(), MaxPool2d(2),
            Conv2d(width, 2 * width, 3, padding=1, bias=False), BatchNorm2d(2 * width), ReLU(), MaxPool2d(2))
        self.classifier = Linear(8 * width, 10)

    def forward(self, x: Tensor) -> Tensor:
        h = self.features(sh.reshape(x, (x.shape[0], 1, 8, 8)))
        return self.classifier(sh.reshape(h, (x.shape[0], -1)))


def build_cnn(width: int = 32) -> DigitsCNN:
    return DigitsCNN(width)


__all__ = ["DigitsCNN", "build_cnn"]
