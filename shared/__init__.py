"""tenantmeter's shared package.

The modules directly in this package are the pure core: standard library only, no I/O at import or call
time (except reading the packaged price catalog and a tenant config file when asked to). Ports live in
``shared.ports`` and the technology adapters in ``shared.adapters``; importing ``shared`` loads neither.
"""

__all__: list[str] = []
