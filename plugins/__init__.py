"""omnitrain's built-in plugins, installed as the ``omnitrain_plugins`` package.

Each module registers one component and is listed under the ``omnitrain.plugins``
entry-point group in pyproject.toml: the same road a third-party plugin takes.
"""
