"""vdr_app: visual document retrieval with multi-vector (ColPali-family) models, and what shrinking
their vectors does.

Importing this package is cheap: torch, transformers and gradio load only when a model or the UI is
first used. Public entry points:

    vdr_app.engine.Engine              index PDFs, keep views, search
    vdr_app.index.maxsim.MaxSimIndex   packed late-interaction index over (n_i, d) arrays
    vdr_app.reduce.reduce_page         prune or merge one page's vectors by a view spec
    vdr_app.models.load_encoder        a ColPali-family checkpoint or a named encoder
    vdr_app.config.Settings            configuration from VDR_* environment variables
"""

__version__ = "0.1.0"
