"""Turning user input into image tensors: shapes, scaling and validation.

Knows nothing of models. The estimators hand everything they are given to this
module, so the rules below are the package's one input contract.

Kinds of input
--------------
* **arrays** (NumPy, torch tensors, nested lists), laid out as below;
* **image folders**: a path with one sub-folder per class (:func:`load_image_folder`,
  :class:`ImageFolderDataset`); for prediction also a folder of images or a list
  of image files;
* **torch Datasets** of ``(image, label)`` items (any map-style dataset with
  ``__len__``), read item by item so that data larger than memory trains.

An estimator given a folder reads it into memory when its decoded pixels fit in
:data:`FOLDER_MEMORY_BUDGET` bytes, else lazily through an
:class:`ImageFolderDataset`; both give the same results.

Layouts accepted for arrays (and for each dataset item, without the ``n``)
-------------------------------------------------------------------------
* ``(n, h, w)``: grey images;
* ``(n, c, h, w)`` or ``(n, h, w, c)``: colour images; channels-last is
  recognised when the last axis has 1, 3 or 4 entries and the second does not;
* ``(n, features)``: flat rows, reshaped with ``image_shape`` (``(h, w)`` or
  ``(c, h, w)``); without it, square grey images when ``features`` is a perfect
  square, otherwise one row of ``features`` pixels (tabular data).

Scaling rule
------------
Integer arrays must lie in [0, 65535]: when their largest value is at most 255
the whole array is read as 8-bit (divided by 255), otherwise as 16-bit (divided
by 65535). An estimator decides this divisor once, on the data given to
``fit`` (``input_scale_``), and divides every later array by it, whatever
that array's largest value; an array unlike the fit's (floats after a fit on
integers, integers after a fit on floats, values above the divisor) warns.
Booleans are 0 and 1. Floating-point pixels are used as given and
must be finite and within float32's range (``|x| < 3.4e38``). The items of a
torch Dataset are scaled one by one, so their divisor comes from the dtype, not
the values: ``uint8`` / 255, ``uint16`` / 65535, floats and booleans as above;
other integer dtypes are refused there. Image files are decoded to floats in
[0, 1] (8-bit formats / 255, 16- and 32-bit integer ones / 65535, clipped;
32-bit float images as given). After that every channel is
standardised with the mean and standard deviation seen at ``fit`` (estimated
from at most :data:`STATS_SAMPLE` images of a torch Dataset, all of them when
there are no more).

Size rule
---------
An image needs at least one row and one column and at least 2 pixels. The
network's reductions halve the resolution rounding up (odd sides are padded),
so any such image keeps at least one pixel through every reduction and no
larger minimum is imposed; a single pixel has no spatial extent for the
convolutions and reductions to act on (a one-feature problem) and is refused.

Image files
-----------
Pillow reads png, jpg/jpeg, bmp, gif (first frame), tif/tiff and webp files, in
grey, RGB, RGBA, palette and 16-bit modes; other files (by extension) and
hidden files and folders are ignored. The EXIF orientation is applied. Alpha is
dropped after compositing the image on a **white** background. With
``color="auto"`` the images are read as grey (1 channel) when every image is
grey (grey modes, or palettes whose entries are all grey), else as RGB (3
channels; grey images are repeated on the three channels). ``color="grey"``
converts colour images with the ITU-R 601 luma weights (as Pillow's ``"L"``).
Images whose size differs from ``image_size`` are resized (bilinear, with
antialiasing when shrinking); ``image_size=None`` takes the most common size
among the images (the first in file order on ties), so a folder of equally
sized images is never resampled.

Modules
-------
* :mod:`skdarts.data.arrays` - arrays to images, scaling, shapes and sizes;
* :mod:`skdarts.data.folders` - image folders and files;
* :mod:`skdarts.data.datasets` - torch Datasets;
* :mod:`skdarts.data.progress` - progress bars of long reads.

Layer: above ``supernet``, below ``search``; knows nothing of models.
"""

from .arrays import (
    as_images,
    channel_stats,
    check_image_size,
    infer_image_shape,
    is_path_input,
    parse_image_size,
    pixel_divisor,
    resize_images,
    to_host,
)
from .datasets import (
    STATS_SAMPLE,
    DatasetImages,
    ResizedImages,
    StandardisedDataset,
    check_dataset,
    dataset_labels,
    dataset_stats,
    image_from_item,
)
from .folders import (
    FOLDER_MEMORY_BUDGET,
    IMAGE_EXTENSIONS,
    ImageFolderDataset,
    _ImageFiles,  # noqa: F401  (tests patch it through the package)
    load_image_folder,
    read_image_files,
)
from .progress import PROGRESS_DELAY

__all__ = [
    "FOLDER_MEMORY_BUDGET",
    "IMAGE_EXTENSIONS",
    "PROGRESS_DELAY",
    "STATS_SAMPLE",
    "DatasetImages",
    "ImageFolderDataset",
    "ResizedImages",
    "StandardisedDataset",
    "as_images",
    "channel_stats",
    "check_dataset",
    "check_image_size",
    "dataset_labels",
    "dataset_stats",
    "image_from_item",
    "infer_image_shape",
    "is_path_input",
    "load_image_folder",
    "parse_image_size",
    "pixel_divisor",
    "read_image_files",
    "resize_images",
    "to_host",
]
