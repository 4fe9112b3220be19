"""Data: the built-in synthetic fracture benchmark, image folders and CSV manifests, and expert ground truth.

Images come out as float tensors ``[C, H, W]`` in [0, 1]; ground truth is a :class:`Truth` (a mask and/or
points) in the coordinates of the image as the model sees it. The modules with a leading underscore are
internal (file checks, annotation parsers); DICOM and 16-bit PNG reading live in :mod:`robustxai.data._dicom`
and :mod:`robustxai.data._imageio`.
"""

from robustxai.data._annotations import AnnotationResult, list_formats, read_annotations
from robustxai.data._base import ImageDataset, Sample, SubsetDataset, split_indices, stack_images
from robustxai.data._folder import FolderDataset
from robustxai.data._manifest import read_manifest
from robustxai.data._synthetic import SyntheticFracture
from robustxai.data._transforms import Transform, create_transform, list_transforms
from robustxai.data._truth import Truth
from robustxai.data._writer import write_folder

__all__ = [
    "AnnotationResult",
    "FolderDataset",
    "ImageDataset",
    "Sample",
    "SubsetDataset",
    "SyntheticFracture",
    "Transform",
    "Truth",
    "create_transform",
    "list_formats",
    "list_transforms",
    "read_annotations",
    "read_manifest",
    "split_indices",
    "stack_images",
    "write_folder",
]
