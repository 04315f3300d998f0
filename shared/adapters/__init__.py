"""Adapters: one module per technology and role, each implementing ports from shared.ports.

Nothing here connects or reads configuration at import time; clients are passed in or built on first use.
"""
