"""Layering policy: which content units get a layer of their own (by popularity in the
unit graph, as nixpkgs' buildLayeredImage does), and which share the last one.
Imports nothing of vmbuild's but the standard library.
"""
