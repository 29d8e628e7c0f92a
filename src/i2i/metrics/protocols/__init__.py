"""Evaluation protocols: what each task measures, owned by the task (`evaluation_protocol`) and
run by `i2i.callbacks.evaluation.GANMetrics` when it is time (see `base` for the interface)."""

from i2i.metrics.protocols.base import EvaluationOptions, EvaluationProtocol, ScoringNetworks
from i2i.metrics.protocols.inpainting import InpaintingProtocol
from i2i.metrics.protocols.paired import PairedTranslationProtocol
from i2i.metrics.protocols.semantic import SemanticConsistencyProtocol
from i2i.metrics.protocols.unpaired import UnpairedProtocol

__all__ = [
    "EvaluationOptions",
    "EvaluationProtocol",
    "InpaintingProtocol",
    "PairedTranslationProtocol",
    "ScoringNetworks",
    "SemanticConsistencyProtocol",
    "UnpairedProtocol",
]
