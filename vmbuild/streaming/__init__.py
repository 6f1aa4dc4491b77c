"""The streaming writer: a docker-archive written in one pass while its layers pack.

``stream`` (the archive), ``lazy`` (layers packed on demand), ``packing`` (a layer into
a sink, and the hashing sink), ``fdwriter`` (the pipe sink, spliced), ``hashpool``
(diff_ids hashed in parallel), ``idcache`` (diff_ids remembered for unchanged trees).
Imports ``oci``, ``cache``.
"""
