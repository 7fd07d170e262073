"""Fisher vectors of videos from local descriptors (Tokmakov et al. §3.3).

PCA per descriptor part (:mod:`.pca`), a diagonal GMM fit by EM in torch
(:mod:`.gmm`), Fisher vector encoding in three variants (:mod:`.encode`), count
sketching (:mod:`.sketch`), the whole model and its ``vcl.fisher_model/1`` store
(:mod:`.model`), and reading descriptor stores ragged by video (:mod:`.data`).
"""

from vcl.fisher.encode import VARIANTS, FisherEncoder, fisher_dim, fisher_vectors
from vcl.fisher.gmm import DiagonalGMM
from vcl.fisher.model import SCHEMA, FisherModel
from vcl.fisher.pca import PCA
from vcl.fisher.sketch import CountSketch

__all__ = [
    "PCA",
    "SCHEMA",
    "VARIANTS",
    "CountSketch",
    "DiagonalGMM",
    "FisherEncoder",
    "FisherModel",
    "fisher_dim",
    "fisher_vectors",
]
