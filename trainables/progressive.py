"""Progressive resolution: the first epochs of a run at lower input sizes, then ``image_size``.

``progressive_stages`` lists ``[epochs, size]`` pairs (``[[3, 256], [3, 512]]``) or the same as
text, ``"3@256,3@512"`` (Optuna's categorical choices must be scalars, so a space names stages as
text; that is also the canonical value a config holds). The stages run in order, then the run
goes on at ``image_size`` until ``epochs``: early epochs, and so early ASHA rungs, are cheap,
and resolution becomes a fidelity. The weights carry over from stage to stage (every model is
fully convolutional); the heatmaps stay at ``heatmap_stride`` and sigma follows each stage's size
(``trainables.shape.sigma_for``).
"""

from __future__ import annotations

from typing import Any

from trainables.shape import Size, canonical, size_rule

Stages = str  # canonical: "E@SIZE,E@SIZE" with SIZE an int or WxH


def parse(value: Any) -> tuple[tuple[int, Size], ...] | None:
    """The ``(epochs, size)`` pairs ``value`` (pairs or text) stands for; None if it is not
    one of those forms (an empty list or text is no stages: ``()``)."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return ()
        pairs: list[Any] = []
        for part in text.split(","):
            epochs, sep, size = part.partition("@")
            if not sep or not epochs.strip().isdigit():
                return None
            size = size.strip()
            pairs.append([int(epochs), int(size) if size.isdigit() else size])
    elif isinstance(value, (list, tuple)):
        pairs = list(value)
    else:
        return None
    out = []
    for pair in pairs:
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            return None
        epochs, size = pair
        size = canonical(size)
        if isinstance(epochs, bool) or not isinstance(epochs, int) or size is None:
            return None
        out.append((epochs, size))
    return tuple(out)


def canonical_stages(value: Any) -> Stages | None:
    """The canonical text of ``value``; None if it is not stages."""
    stages = parse(value)
    if stages is None:
        return None
    return ",".join(f"{epochs}@{size}" for epochs, size in stages)


def stages_rule(value: Stages) -> str | None:
    """The rule canonical stages break (epochs >= 1, every size valid), or None."""
    for epochs, size in parse(value) or ():
        if epochs < 1:
            return f"must give every stage >= 1 epochs, got {epochs}@{size}"
        rule = size_rule(size)
        if rule:
            return f"stage {epochs}@{size}: size {rule}"
    return None


def size_at(stages: Stages | None, image_size: Size, epoch: int) -> Size:
    """The input size of ``epoch`` (1-based): its stage's, or ``image_size`` after the stages."""
    end = 0
    for epochs, size in parse(stages) or ():
        end += epochs
        if epoch <= end:
            return size
    return image_size
