"""The Xe driver (drivers/gpu/drm/xe/): one module per kernel file. The machine around
it is reached through the XeHost Protocol (xe/host.py).
"""
