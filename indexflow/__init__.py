"""indexflow core: merge operator catalogs without opm. Never imports Prefect."""

__version__ = "0.1.0"
