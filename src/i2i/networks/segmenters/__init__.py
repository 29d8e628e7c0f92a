"""The segmenters of labels -> photo evaluation (semantic consistency: mIoU, pixel accuracy), as
the papers since pix2pixHD use them, each loading its published file(s) unchanged:

| segmenter            | dataset    | classes | published file(s)                                |
|----------------------|------------|--------:|--------------------------------------------------|
| `DRNSegmenter`       | Cityscapes |      19 | drn-d-105_ms_cityscapes.pth (fyu/drn)            |
| `DeepLabV2Segmenter` | COCO-Stuff |     182 | deeplabv2_resnet101_msc-cocostuff164k-100000.pth |
| `UperNetSegmenter`   | ADE20K     |     150 | ade20k-resnet101-upernet encoder + decoder       |

Each maps images in [-1, 1] to logits (N, num_classes, H', W') and owns its input normalisation
and size. Nothing downloads: the files go in `i2i.weights.weights_dir()` (`i2i-weights`).
"""

from i2i.networks.segmenters.base import Segmenter, load_exact, read_state_dict
from i2i.networks.segmenters.deeplab import DeepLabV2, DeepLabV2Segmenter
from i2i.networks.segmenters.drn import DRNSegmenter
from i2i.networks.segmenters.upernet import ResNetEncoder, UperNetDecoder, UperNetSegmenter

__all__ = [
    "DRNSegmenter",
    "DeepLabV2",
    "DeepLabV2Segmenter",
    "ResNetEncoder",
    "Segmenter",
    "UperNetDecoder",
    "UperNetSegmenter",
    "load_exact",
    "read_state_dict",
]
