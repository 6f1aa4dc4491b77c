"""Content units: what an image is made of, resolved on the host.

``graph`` (the unit graph: file, link and helper units, ELF closures, shebangs),
``elf``/``elfheaders``/``elfcache`` (reading ELF dependencies, remembered per file),
``helpers`` (usrBinEnv, binSh, caCertificates, fakeNss). Imports ``oci``, ``run``,
``cache``.
"""
