"""Built-in dataset adapters: the published layouts of public sets, a manifest, and the synthetic
sample used when no ``--data`` is given. See docs/datasets.md for each layout and its citation."""

from __future__ import annotations

from typing import Any

from dermbench.components import Component
from dermbench.data import adapters, atlas_adapters, isic_adapter
from dermbench.data.synthetic import SyntheticOptions, load_synthetic
from dermbench.hookspecs import hookimpl

HAM = "Tschandl, Rosendahl & Kittler, Sci. Data 5, 180161 (2018)"

DATASETS = (
    Component(
        "ham10000",
        adapters.load_ham10000,
        "HAM10000: HAM10000_metadata.csv + <image_id>.jpg in any sub-folder; labels dx, groups lesion_id",
        adapters.Ham10000Options,
        paper=HAM,
    ),
    Component(
        "isic2018",
        isic_adapter.load_isic2018,
        "ISIC 2018 Task 3: one-hot ground-truth CSV (image,MEL,...) + images; optional lesion groupings",
        isic_adapter.Isic2018Options,
        paper=f"Codella et al., arXiv:1902.03368 (2019); {HAM}",
    ),
    Component(
        "medmnist",
        adapters.load_medmnist,
        "MedMNIST v2 .npz ({train,val,test}_{images,labels}) with its official split; DermaMNIST by default",
        adapters.MedmnistOptions,
        paper="Yang et al., Sci. Data 10, 41 (2023)",
    ),
    Component(
        "dermamnist",
        adapters.load_dermamnist,
        "DermaMNIST as JPEG files: labels.csv (image_id,dx,split) + images/, official split",
        adapters.DermamnistOptions,
        paper=f"Yang et al., Sci. Data 10, 41 (2023); {HAM}",
    ),
    Component(
        "fitzpatrick17k",
        adapters.load_fitzpatrick17k,
        "Fitzpatrick17k: CSV (md5hash, fitzpatrick_scale, label, ...) + images/<md5hash>.jpg, skin types",
        adapters.Fitzpatrick17kOptions,
        paper="Groh et al., CVPR Workshops (2021)",
    ),
    Component(
        "derm7pt",
        atlas_adapters.load_derm7pt,
        "Derm7pt / EDRA: meta/meta.csv (diagnosis, clinic, derm) + images/, official split from the index files",
        atlas_adapters.Derm7ptOptions,
        paper="Kawahara et al., IEEE JBHI 23(2), 2019",
    ),
    Component(
        "dermofit",
        atlas_adapters.load_dermofit,
        "Dermofit Image Library: <CLASS>/<id>/<id>.png for 10 classes, checked against lesionlist.txt",
        atlas_adapters.DermofitOptions,
        paper="Ballerini et al., Color Medical Image Analysis, Springer (2013)",
    ),
    Component(
        "manifest",
        adapters.load_manifest,
        "any dataset as a CSV: image, label, optional split, group/lesion_id/patient_id, skin_type",
        adapters.ManifestOptions,
    ),
    Component(
        "synthetic",
        load_synthetic,
        "embedded synthetic lesions: HAM-like imbalance, lesion groups, skin tones 1-6 (the default)",
        SyntheticOptions,
    ),
)


@hookimpl
def dermbench_register_datasets(register: Any) -> None:
    for component in DATASETS:
        register(component)
