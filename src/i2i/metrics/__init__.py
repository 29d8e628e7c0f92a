"""Evaluation metrics: P-IDS / U-IDS (CoModGAN) and FID on the FID network's Inception features.

- `InceptionDiscriminativeScore`: the torchmetrics metric (DDP-aware).
- `fit_linear_svc`: scikit-learn's ``LinearSVC(dual=False)`` reproduced in torch.
- `inception_feature_extractor`: the 2048-d pool3 features, loaded offline.
- `reference_statistics`: FID statistics of a dataset, split across processes, cached on disk.
- `SemanticConsistency`: mIoU / pixel accuracy of a segmenter on outputs (labels -> photo).
- `i2i.metrics.protocols`: what each task evaluates (inpainting, paired translation, unpaired).
"""

from i2i.metrics.features import (
    INCEPTION_FILENAME,
    INCEPTION_URL,
    download_inception_weights,
    inception_feature_extractor,
    quantize_images,
)
from i2i.metrics.fid_stats import FeatureStats, reference_statistics
from i2i.metrics.ids import InceptionDiscriminativeScore, discriminative_scores, frechet_distance
from i2i.metrics.semantic import SemanticConsistency, class_set
from i2i.metrics.svm import fit_linear_svc, solve_linear_svc

__all__ = [
    "INCEPTION_FILENAME",
    "INCEPTION_URL",
    "FeatureStats",
    "InceptionDiscriminativeScore",
    "discriminative_scores",
    "download_inception_weights",
    "fit_linear_svc",
    "frechet_distance",
    "inception_feature_extractor",
    "quantize_images",
    "SemanticConsistency",
    "class_set",
    "reference_statistics",
    "solve_linear_svc",
]
