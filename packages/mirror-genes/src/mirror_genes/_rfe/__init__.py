"""Array-level RFE-CV engine (pure numpy; no AnnData): ``rfecv_array(X, y, ...)``.

``mirror_genes.tl.rfecv`` is the AnnData face of this engine; nested selection calls
``rfecv_array`` directly on each outer fold's training matrix.
"""

from ._api import RFECVResult, rfecv_array
from ._inputs import elimination_sizes
from ._sklearn import make_sklearn_estimator

__all__ = ["RFECVResult", "elimination_sizes", "make_sklearn_estimator", "rfecv_array"]
