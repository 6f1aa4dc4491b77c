"""What is in an image: an inventory of what a build put in, as SPDX 2.3 or CycloneDX
1.5 JSON, and an in-toto statement with a SLSA v1 provenance predicate.

- :mod:`.inventory`: the model (components, files with hashes, references).
- :mod:`.collect`: components from what the builders know (base images, host units,
  helpers, Debian package units, unattributed files); :mod:`.dpkg` and
  :mod:`.layerfiles`: packages and files read from an image's layers as streams.
- :mod:`.spdx` (spdx-tools), :mod:`.cyclonedx` (cyclonedx-python-lib),
  :mod:`.provenance`: the documents, deterministic (the image's ``created``, UUIDs
  derived from its digests).
- :mod:`.attest`: the builders' hook (a :class:`~.attest.Record` per build; files
  beside the image; referrer artifacts for OCI outputs, :mod:`vmbuild.oci.referrers`).
- :mod:`.cli`: ``vmbuild sbom ARCHIVE``.
"""
