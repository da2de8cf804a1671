"""The datasets, by name. A new one is a module here, a line below, and a data revision."""

from app.datasets import products, rates
from app.datasets.base import Dataset

DATASETS: dict[str, Dataset] = {d.name: d for d in (products.DATASET, rates.DATASET)}
