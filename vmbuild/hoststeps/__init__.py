"""Steps that run on the host without root: extraCommands and fakeRootCommands.

``stage`` (a tree materialised in a work dir, a script run there), ``custom`` (the
customisation layer of layered images, fakeroot sessions), ``fakepack`` (the program
one fakeroot session runs). Imports ``oci``, ``run``, ``units``.
"""
